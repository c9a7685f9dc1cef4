//! The hash-key verifier (docs/api.md, "The hash key"): one row that lets a
//! process tell whether its hash key is the one the database's keys were
//! hashed with.

use diesel::sql_types::Bytea;
use diesel::{sql_query, QueryableByName, RunQueryDsl};
use domain::hashing::HashKeyVerifier;
use domain::RepositoryError;

use crate::store::PgStore;

#[derive(QueryableByName)]
struct VerifierRow {
    #[diesel(sql_type = Bytea)]
    salt: Vec<u8>,
    #[diesel(sql_type = Bytea)]
    verifier: Vec<u8>,
}

fn read(conn: &mut diesel::PgConnection) -> Result<Option<HashKeyVerifier>, diesel::result::Error> {
    let row = sql_query("SELECT salt, verifier FROM hash_key_verifier")
        .get_results::<VerifierRow>(conn)?
        .into_iter()
        .next();
    // The table's checks hold the lengths: a row always makes a verifier.
    Ok(row.and_then(|row| HashKeyVerifier::from_parts(&row.salt, &row.verifier)))
}

impl PgStore {
    /// The stored hash-key verifier, if there is one.
    ///
    /// # Errors
    /// [`RepositoryError`] when the database cannot be reached.
    pub fn hash_key_verifier(&self) -> Result<Option<HashKeyVerifier>, RepositoryError> {
        self.run(
            "reading the hash-key verifier",
            |conn| Ok(read(conn)?),
            |_| None,
        )
    }

    /// Stores `verifier` if the database has none yet and holds no key (a
    /// new database: no key was hashed with another hash key), then returns
    /// the verifier stored now: `verifier`, another process's that came
    /// first, or `None` when the database holds keys but no verifier.
    ///
    /// # Errors
    /// [`RepositoryError`] when the database cannot be reached.
    pub fn init_hash_key_verifier(
        &self,
        verifier: &HashKeyVerifier,
    ) -> Result<Option<HashKeyVerifier>, RepositoryError> {
        self.run(
            "storing the hash-key verifier",
            |conn| {
                sql_query(
                    "INSERT INTO hash_key_verifier (salt, verifier)
                     SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM api_keys)
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind::<Bytea, _>(verifier.salt().as_slice())
                .bind::<Bytea, _>(verifier.tag().as_slice())
                .execute(conn)?;
                Ok(read(conn)?)
            },
            |_| None,
        )
    }

    /// Stores `verifier`, replacing any other: the operator's
    /// `apikeys hash-key set`.
    ///
    /// # Errors
    /// [`RepositoryError`] when the database cannot be reached.
    pub fn set_hash_key_verifier(&self, verifier: &HashKeyVerifier) -> Result<(), RepositoryError> {
        self.run(
            "storing the hash-key verifier",
            |conn| {
                sql_query(
                    "INSERT INTO hash_key_verifier (salt, verifier) VALUES ($1, $2)
                     ON CONFLICT (id) DO UPDATE SET salt = EXCLUDED.salt,
                                                    verifier = EXCLUDED.verifier",
                )
                .bind::<Bytea, _>(verifier.salt().as_slice())
                .bind::<Bytea, _>(verifier.tag().as_slice())
                .execute(conn)?;
                Ok(())
            },
            |_| None,
        )
    }
}
