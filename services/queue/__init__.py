"""queue: each room's ordered queue of videos, and which entry plays next."""
