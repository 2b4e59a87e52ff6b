"""Infrastructure drivers. A driver gets plain dataclasses in and out, never rows."""
