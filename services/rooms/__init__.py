"""rooms: rooms, memberships, roles, settings and the playback state machine."""
