"""Wire formats: pure codecs from bytes to payloads and back, one module per protocol."""
