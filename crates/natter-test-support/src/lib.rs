//! Helpers shared by Natter's test suites (never by production code): where the PostgreSQL
//! and Redis the tests use live, a fresh database on that server, and whether the programs
//! some tests run are installed.

/// The URL in environment variable `var` (such as `NATTER_TEST_DATABASE_URL`), naming `what`
/// it is for. When it is unset, tests that need it must not pass silently: under CI (`CI` set)
/// this panics; elsewhere it prints a notice and returns `None`, and the test returns early.
///
/// # Panics
/// `var` is unset and `CI` is set.
pub fn service_url(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            missing(&format!("{var} is not set"), what);
            None
        }
    }
}

/// Whether a program the tests need is `installed` (such as Prometheus or a Python package),
/// naming `what` it is for. When it is not, tests that need it must not pass silently: under
/// CI (`CI` set) this panics; elsewhere it prints a notice and returns false, and the test
/// returns early.
///
/// # Panics
/// It is not installed and `CI` is set.
pub fn installed(installed: bool, program: &str, what: &str) -> bool {
    if !installed {
        missing(&format!("{program} is not installed"), what);
    }
    installed
}

/// Says that `lack` keeps a `what` test from running: a panic under CI, else a notice.
fn missing(lack: &str, what: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{lack}, and CI must run the {what} tests"
    );
    eprintln!("NOTICE: {lack}; skipping a {what} test");
}

/// The PostgreSQL server tests may create databases on (`NATTER_TEST_DATABASE_URL`).
pub fn postgres_url() -> Option<String> {
    service_url("NATTER_TEST_DATABASE_URL", "PostgreSQL")
}

/// The Redis server for cluster tests (`NATTER_TEST_REDIS_URL`).
pub fn redis_url() -> Option<String> {
    service_url("NATTER_TEST_REDIS_URL", "cluster")
}

/// A new, empty PostgreSQL database on the test server, dropped with this value.
pub struct ScratchPostgres {
    /// Its URL.
    pub url: String,
    admin_url: String,
    name: String,
}

impl ScratchPostgres {
    /// Creates one, or returns `None` when PostgreSQL is not configured here (see
    /// [`service_url`]).
    ///
    /// # Panics
    /// The configured server cannot be reached or refuses to create the database.
    pub async fn create() -> Option<Self> {
        use sqlx::Connection;
        let admin_url = postgres_url()?;
        let name = format!("natter_test_{}", uuid::Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at NATTER_TEST_DATABASE_URL: {e}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("creating a test database");
        Some(Self {
            url: with_database(&admin_url, &name),
            admin_url,
            name,
        })
    }
}

impl Drop for ScratchPostgres {
    fn drop(&mut self) {
        use sqlx::Connection;
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop may run inside a test's runtime: a thread with its own removes the database.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .map_err(|e| e.to_string())?;
                Ok::<_, String>(())
            })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("could not drop test database {}: {error}", self.name);
        }
    }
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let path_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[path_start..].find('/') {
        Some(slash) => &base[..path_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_url_rewriting() {
        assert_eq!(
            with_database("postgres://127.0.0.1:5432/test", "x"),
            "postgres://127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/test?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
    }
}
