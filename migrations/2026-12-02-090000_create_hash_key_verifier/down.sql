DROP TABLE hash_key_verifier;
