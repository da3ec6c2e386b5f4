"""Prefect task wrappers shared by the flows: retries, timeouts, caching and tags declared on the
decorator around plain swerl library calls. Filled in as the stages that need them are built."""
