"""Pieces both apps share: the one family of service errors, and the API kit."""
