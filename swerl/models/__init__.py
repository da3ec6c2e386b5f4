"""Model directories: tiny local models for tests and the demo (more to come: versioned
checkpoints in the lake)."""
