"""newsletter: turn a blog's new articles into newsletter emails and record what readers do."""

__version__ = "0.1.0"
