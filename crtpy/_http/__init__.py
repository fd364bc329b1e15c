"""Private HTTP machinery: sans-I/O protocol cores (HTTP/1.1 on httptools, HTTP/2 on h2),
the asyncio protocols that drive them, and proxy setup."""
