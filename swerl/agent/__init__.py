"""The agent scaffold of PAPER.md section 2: prompts, command parsing, tools, the episode loop."""
