"""Connections to coding agents: one module per agent (claude_code.py: skill, command, hook, MCP)."""
