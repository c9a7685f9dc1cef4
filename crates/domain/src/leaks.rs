//! Leaked-key reports (docs/api.md, "POST /v1/leaked-keys"): anyone who finds
//! a key may report it, and every real secret key among the reports is
//! revoked at once.
