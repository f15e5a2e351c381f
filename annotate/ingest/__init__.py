"""Transcripts in: reading files, cutting chats into turns, rounds and the handoff, masking personal data."""
