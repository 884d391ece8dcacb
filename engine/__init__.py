"""The runtime: event-store application, command handlers, group committer, roles."""
