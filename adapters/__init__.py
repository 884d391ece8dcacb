"""Everything that talks to the outside world: databases, SMTP, DNS, DKIM, HTTP clients."""
