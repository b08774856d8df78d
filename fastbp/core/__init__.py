"""The math of backprop, written once against the backend operations (:mod:`.ops`): the
equations, the costs, the epoch plan and its loop, the records. Imports nothing above it."""
