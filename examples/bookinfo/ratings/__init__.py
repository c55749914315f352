"""The ratings service: the stars each reviewer gave a book."""
