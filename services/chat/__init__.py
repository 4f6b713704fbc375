"""chat: each room's messages, their history, moderation, and the chat rate limit."""
