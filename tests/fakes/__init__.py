"""Local fakes of the outside systems Rally talks to: real HTTP on loopback, checking what the
real services check and answering with their shapes (see `http_server` for the common base)."""
