//! Checks on an application database, as the installer needs them: does it
//! hold a usable application schema (a client joining an existing
//! database), is it empty and writable (a new external database), and
//! creating it on a local server.
//!
//! No table names are assumed: "the application schema" is whatever
//! ordinary tables the connected role can read and write.

use postgres_protocol::escape::{escape_identifier, escape_literal};
use tokio_postgres::{Client, GenericClient};

use crate::error::{Error, Result};
use crate::naming::Naming;
use crate::roles::validate_name;

/// One ordinary (or partitioned) table outside the system schemas, with
/// what the connected role may do with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableAccess {
    /// Schema name.
    pub schema: String,
    /// Table name.
    pub name: String,
    /// The role can SELECT from it (and use its schema).
    pub select: bool,
    /// The role can INSERT into it (and use its schema).
    pub insert: bool,
}

impl TableAccess {
    /// `schema.name`, as printed to people (not quoted for SQL).
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// Readable and writable by the connected role.
    pub fn usable(&self) -> bool {
        self.select && self.insert
    }
}

/// Lists the non-system tables of the current database (ordinary and
/// partitioned, not temporary), sorted by schema and name, with the
/// connected role's SELECT and INSERT rights (`has_table_privilege` and
/// schema USAGE).
pub async fn tables(client: &impl GenericClient) -> Result<Vec<TableAccess>> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text,
                    has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT'),
                    has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'INSERT')
               FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p')
                AND c.relpersistence <> 't'
                AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                AND n.nspname !~ '^pg_toast'
                AND n.nspname !~ '^pg_temp_'
              ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(Error::sql("listing the database's tables"))?;
    Ok(rows
        .iter()
        .map(|row| TableAccess {
            schema: row.get(0),
            name: row.get(1),
            select: row.get(2),
            insert: row.get(3),
        })
        .collect())
}

/// What [`check_application_schema`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaCheck {
    /// Every non-system table, with the role's rights.
    pub tables: Vec<TableAccess>,
}

impl SchemaCheck {
    /// The tables the role can both SELECT from and INSERT into.
    pub fn usable(&self) -> impl Iterator<Item = &TableAccess> {
        self.tables.iter().filter(|t| t.usable())
    }

    /// Whether the database holds an application schema this role can use:
    /// at least one table it can read and write.
    pub fn is_usable(&self) -> bool {
        self.usable().next().is_some()
    }
}

/// Looks at the current database for an existing application schema (see
/// [`SchemaCheck::is_usable`]).
pub async fn check_application_schema(client: &impl GenericClient) -> Result<SchemaCheck> {
    Ok(SchemaCheck {
        tables: tables(client).await?,
    })
}

/// Checks that the connected role can create objects in the current
/// database: creates and drops a table in its default schema inside a
/// transaction that is rolled back, so nothing is left either way.
/// The table is named by the caller ([`Naming::probe_table`]).
pub async fn check_can_create(client: &mut Client, naming: &Naming) -> Result<()> {
    let tx = client
        .transaction()
        .await
        .map_err(Error::sql("starting a transaction"))?;
    let table = escape_identifier(&naming.probe_table());
    tx.batch_execute(&format!(
        "CREATE TABLE {table} (id integer); DROP TABLE {table}"
    ))
    .await
    .map_err(Error::sql(
        "creating a table in the database's default schema",
    ))?;
    tx.rollback()
        .await
        .map_err(Error::sql("rolling back the probe transaction"))?;
    Ok(())
}

/// Whether database `name` exists on the server.
pub async fn database_exists(client: &impl GenericClient, name: &str) -> Result<bool> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1)",
            &[&name],
        )
        .await
        .map_err(Error::sql(format!("looking up database \"{name}\"")))?;
    Ok(row.get(0))
}

/// Creates database `name` owned by `owner` unless it exists, with the
/// comment [`Naming::database_comment`]; says whether it created it. An
/// existing database is left as it is (its owner is not changed).
pub async fn ensure_database(
    client: &impl GenericClient,
    name: &str,
    owner: &str,
    naming: &Naming,
) -> Result<bool> {
    validate_name("database", name)?;
    validate_name("role", owner)?;
    if database_exists(client, name).await? {
        return Ok(false);
    }
    let sql = format!(
        "CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0",
        escape_identifier(name),
        escape_identifier(owner)
    );
    client
        .batch_execute(&sql)
        .await
        .map_err(Error::sql(format!("creating database \"{name}\"")))?;
    let comment = format!(
        "COMMENT ON DATABASE {} IS {}",
        escape_identifier(name),
        escape_literal(&naming.database_comment())
    );
    client
        .batch_execute(&comment)
        .await
        .map_err(Error::sql(format!("commenting database \"{name}\"")))?;
    Ok(true)
}
