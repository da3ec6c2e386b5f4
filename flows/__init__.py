"""Prefect flows, one per pipeline stage; each is a thin wrapper over the swerl library function
of the same name (see DESIGN.md "Stages and datasets")."""
