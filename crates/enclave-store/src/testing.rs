//! Test support: throwaway databases on both backends. Tests create their own databases and
//! drop them afterwards; with `CI=true` a PostgreSQL that cannot be reached is a failure.

use std::path::PathBuf;

/// Where the PostgreSQL tests connect to create their databases.
pub fn postgres_admin_url() -> String {
    std::env::var("ENCLAVE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A database created for one test and dropped (with its connections) when this is dropped.
pub struct TempPostgres {
    pub url: String,
    name: String,
}

impl TempPostgres {
    /// A fresh database, or `None` when PostgreSQL is unreachable outside CI. Panics in CI
    /// (`CI=true`): there a missing PostgreSQL is a failure, not a skip.
    pub async fn create() -> Option<TempPostgres> {
        use sqlx::Connection;
        let admin = postgres_admin_url();
        let mut conn = match sqlx::PgConnection::connect(&admin).await {
            Ok(c) => c,
            Err(e) => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("PostgreSQL unreachable at {admin} with CI=true: {e}");
                }
                eprintln!("skipping PostgreSQL test: {admin} unreachable ({e})");
                return None;
            }
        };
        let name = format!(
            "enclave_test_{}",
            ulid::Ulid::new().to_string().to_ascii_lowercase()
        );
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("CREATE DATABASE");
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        Some(TempPostgres {
            url: format!("{base}/{name}"),
            name,
        })
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside or outside a runtime; a thread of its own works in both.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut c) = sqlx::PgConnection::connect(&postgres_admin_url()).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut c)
                                .await;
                    }
                });
            }
        })
        .join();
    }
}

/// A SQLite database file in a fresh temporary directory, removed when this is dropped.
pub struct TempSqlite {
    pub url: String,
    pub dir: PathBuf,
}

impl TempSqlite {
    pub fn create() -> TempSqlite {
        let dir = std::env::temp_dir().join(format!(
            "enclave-test-{}",
            ulid::Ulid::new().to_string().to_ascii_lowercase()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let url = format!("sqlite://{}", dir.join("enclave.db").display());
        TempSqlite { url, dir }
    }
}

impl Drop for TempSqlite {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
