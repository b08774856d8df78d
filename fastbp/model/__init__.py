"""The network and its training: :class:`Network`, the book's API, the one epoch driver,
evaluation, monitoring and the gradient check."""
