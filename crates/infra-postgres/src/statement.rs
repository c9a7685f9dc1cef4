//! Raw SQL statements that each connection prepares once and then reuses.
//!
//! Diesel's `sql_query` is never put in the connection's statement cache (it
//! marks itself unsafe to cache), so PostgreSQL plans it again on every call.
//! The write statements are long `WITH` chains (the change, its events and
//! the actor check in one statement), whose planning costs about as much as
//! their execution; [`Statement`] lets Diesel prepare them once per
//! connection (docs/performance.md, "Write statements are prepared once").
//!
//! A [`Template`] is SQL with `$n` placeholders, parsed once; a [`Statement`]
//! binds one value per placeholder number, in order, and Diesel writes the
//! placeholders itself, so the SQL text, and with it the cache key, is the
//! same on every call.

use std::marker::PhantomData;

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};
use diesel::{PgConnection, QueryResult, RunQueryDsl};

/// One piece of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Sql(String),
    /// `$n`, 1-based.
    Param(usize),
}

/// SQL with `$n` placeholders, split once into text and placeholders. A
/// placeholder may stand more than once; each occurrence sends its value
/// again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    pieces: Vec<Piece>,
    params: usize,
}

impl Template {
    /// Splits `sql` at every `$n`.
    pub(crate) fn parse(sql: &str) -> Self {
        let mut pieces = Vec::new();
        let mut params = 0;
        let mut text = String::new();
        let mut chars = sql.char_indices().peekable();
        while let Some((_, c)) = chars.next() {
            let digits_follow = c == '$' && chars.peek().is_some_and(|(_, d)| d.is_ascii_digit());
            if !digits_follow {
                text.push(c);
                continue;
            }
            let mut n = 0usize;
            while let Some((_, d)) = chars.peek().copied().filter(|(_, d)| d.is_ascii_digit()) {
                n = n * 10 + d.to_digit(10).map_or(0, |d| d as usize);
                chars.next();
            }
            if !text.is_empty() {
                pieces.push(Piece::Sql(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Param(n));
            params = params.max(n);
        }
        if !text.is_empty() {
            pieces.push(Piece::Sql(text));
        }
        Template { pieces, params }
    }
}

type BoxedBind<'a> = Box<dyn QueryFragment<Pg> + Send + 'a>;

/// One bound value.
struct Bind<'a, ST, U: ?Sized> {
    value: &'a U,
    sql_type: PhantomData<fn() -> ST>,
}

impl<ST, U> QueryFragment<Pg> for Bind<'_, ST, U>
where
    Pg: HasSqlType<ST>,
    U: ToSql<ST, Pg> + ?Sized,
{
    fn walk_ast<'b>(&'b self, mut pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        pass.push_bind_param::<ST, U>(self.value)
    }
}

/// A [`Template`] with its values, to run with Diesel's `RunQueryDsl`
/// (`execute`, `get_result` into a `QueryableByName` row).
pub(crate) struct Statement<'a> {
    template: &'a Template,
    binds: Vec<BoxedBind<'a>>,
}

impl<'a> Statement<'a> {
    pub(crate) fn new(template: &'a Template) -> Self {
        Statement {
            template,
            binds: Vec::with_capacity(template.params),
        }
    }

    /// Binds the next placeholder (`$1`, then `$2`, ...).
    pub(crate) fn bind<ST, U>(mut self, value: &'a U) -> Self
    where
        Pg: HasSqlType<ST>,
        U: ToSql<ST, Pg> + Sync + ?Sized + 'a,
        ST: 'a,
    {
        self.binds.push(Box::new(Bind::<ST, U> {
            value,
            sql_type: PhantomData,
        }));
        self
    }
}

impl QueryFragment<Pg> for Statement<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        if self.binds.len() != self.template.params {
            return Err(diesel::result::Error::QueryBuilderError(
                format!(
                    "the statement has {} placeholders but {} values",
                    self.template.params,
                    self.binds.len()
                )
                .into(),
            ));
        }
        for piece in &self.template.pieces {
            match piece {
                Piece::Sql(sql) => out.push_sql(sql),
                Piece::Param(n) => match n.checked_sub(1).and_then(|i| self.binds.get(i)) {
                    Some(bind) => bind.walk_ast(out.reborrow())?,
                    None => {
                        return Err(diesel::result::Error::QueryBuilderError(
                            format!("no value for ${n}").into(),
                        ))
                    }
                },
            }
        }
        Ok(())
    }
}

impl QueryId for Statement<'_> {
    type QueryId = ();
    // The SQL text (and the bind types) are the cache key.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Statement<'_> {
    type SqlType = Untyped;
}

impl RunQueryDsl<PgConnection> for Statement<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_split_out_and_counted() {
        let t = Template::parse("SELECT $1::text, $12 WHERE a = $1 AND b = '$x'");
        assert_eq!(t.params, 12);
        assert_eq!(
            t.pieces,
            [
                Piece::Sql("SELECT ".to_owned()),
                Piece::Param(1),
                Piece::Sql("::text, ".to_owned()),
                Piece::Param(12),
                Piece::Sql(" WHERE a = ".to_owned()),
                Piece::Param(1),
                Piece::Sql(" AND b = '$x'".to_owned()),
            ]
        );
    }
}
