"""Files: the model format (plain state, written atomically), archive checks, pictures."""
