"""auth: users, guests and the tokens (JWT) that name them."""
