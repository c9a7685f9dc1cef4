//! The operator's use cases, for the command line (README.md, "The
//! program"): listing tenants, and creating, listing and revoking any
//! tenant's keys, each change recorded with actor `cli`.
