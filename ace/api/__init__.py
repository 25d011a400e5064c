"""The back office: an HTTP API and web page for streamers' staff (FastAPI behind Ray Serve)."""
