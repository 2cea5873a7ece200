"""Key derivation, encryption, password hashing and token formats."""
