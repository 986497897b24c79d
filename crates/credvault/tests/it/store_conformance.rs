//! One conformance suite for both engines: whatever the core relies on must hold on SQLite
//! and on PostgreSQL alike.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::random_hex;
use credvault_store::{Engine, Store, StoreError, StoreOptions, Tx, Value};

/// A store on a fresh SQLite file or a fresh PostgreSQL database.
struct Fresh {
    store: Store,
    cleanup: Option<Box<dyn FnOnce() + Send>>,
}

impl Drop for Fresh {
    fn drop(&mut self) {
        self.store.close();
        if let Some(c) = self.cleanup.take() {
            c();
        }
    }
}

fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f).join().unwrap()
}

fn engines() -> Vec<Engine> {
    let mut v = vec![Engine::Sqlite];
    if cfg!(feature = "postgres-tests") {
        v.push(Engine::Postgres);
    }
    v
}

fn fresh(engine: Engine) -> Fresh {
    match engine {
        Engine::Sqlite => {
            let dir = std::env::temp_dir().join(format!("cv-store-{}", random_hex(6)));
            std::fs::create_dir_all(&dir).unwrap();
            let url = format!("sqlite://{}", dir.join("t.db").display());
            let store = off_runtime(move || Store::open(&url, &StoreOptions::default()).unwrap());
            Fresh {
                store,
                cleanup: Some(Box::new(move || drop(std::fs::remove_dir_all(dir)))),
            }
        }
        Engine::Postgres => {
            let admin = std::env::var("CREDVAULT_TEST_PG_URL")
                .expect("CREDVAULT_TEST_PG_URL must be set for the postgres-tests feature");
            let name = format!("cvs_{}", random_hex(6));
            let (a, n) = (admin.clone(), name.clone());
            let url = off_runtime(move || {
                let mut c = postgres::Client::connect(&a, postgres::NoTls).unwrap();
                c.batch_execute(&format!("CREATE DATABASE {n}")).unwrap();
                format!("{}/{n}", a.rsplit_once('/').unwrap().0)
            });
            let store = off_runtime(move || Store::open(&url, &StoreOptions::default()).unwrap());
            Fresh {
                store,
                cleanup: Some(Box::new(move || {
                    off_runtime(move || {
                        if let Ok(mut c) = postgres::Client::connect(&admin, postgres::NoTls) {
                            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
                        }
                    })
                })),
            }
        }
    }
}

async fn insert_org(s: &Store, id: &str, name: &str) -> Result<(), StoreError> {
    let (id, name) = (id.to_owned(), name.to_owned());
    s.write(move |tx: &mut dyn Tx| {
        tx.execute(
            "INSERT INTO orgs (id, name, settings, created_at) VALUES ($1, $2, '{}', 1)",
            &[id.as_str().into(), name.as_str().into()],
        )
        .map(|_| ())
    })
    .await
}

async fn count_orgs(s: &Store) -> i64 {
    s.read(|tx: &mut dyn Tx| tx.query_one("SELECT COUNT(*) FROM orgs", &[])?.int(0))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_round_trip_on_every_engine() {
    for e in engines() {
        let f = fresh(e);
        let got = f
            .store
            .write(|tx: &mut dyn Tx| {
                tx.execute(
                    "INSERT INTO audit_heads (chain, last_seq, hash) VALUES ($1, $2, $3)",
                    &["ünïcode ✓".into(), i64::MAX.into(), Value::Bytes(vec![0, 255, 7])],
                )?;
                tx.query_one(
                    "SELECT chain, last_seq, hash, NULL FROM audit_heads WHERE chain = $1",
                    &["ünïcode ✓".into()],
                )
            })
            .await
            .unwrap();
        assert_eq!(got.text(0).unwrap(), "ünïcode ✓", "{e:?}");
        assert_eq!(got.int(1).unwrap(), i64::MAX);
        assert_eq!(got.bytes(2).unwrap(), vec![0, 255, 7]);
        assert!(
            got.text(0).is_ok() && got.int(0).is_err(),
            "wrong-type reads are errors, not panics"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_closure_rolls_back_only_itself_even_inside_a_batch() {
    for e in engines() {
        let f = fresh(e);
        let mut handles = Vec::new();
        for i in 0..60 {
            let s = f.store.clone();
            handles.push(tokio::spawn(async move {
                s.write(move |tx: &mut dyn Tx| {
                    tx.execute(
                        "INSERT INTO orgs (id, name, settings, created_at) VALUES ($1, $2, '{}', 1)",
                        &[format!("org_{i}").into(), format!("n{i}").into()],
                    )?;
                    if i % 2 == 1 {
                        return Err(StoreError::Db("closure chose to fail".into()));
                    }
                    Ok(())
                })
                .await
            }));
        }
        let mut ok = 0;
        for h in handles {
            if h.await.unwrap().is_ok() {
                ok += 1;
            }
        }
        assert_eq!(ok, 30, "{e:?}");
        assert_eq!(
            count_orgs(&f.store).await,
            30,
            "{e:?}: failed closures left nothing behind"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits_on_sqlite() {
    let f = fresh(Engine::Sqlite);
    let before = f.store.group_commit_stats().unwrap();
    let mut handles = Vec::new();
    for i in 0..400 {
        let s = f.store.clone();
        handles.push(tokio::spawn(async move {
            insert_org(&s, &format!("org_{i}"), &format!("n{i}")).await
        }));
    }
    for h in handles {
        h.await.unwrap().unwrap();
    }
    let (commits, jobs) = f.store.group_commit_stats().unwrap();
    let (commits, jobs) = (commits - before.0, jobs - before.1);
    assert_eq!(jobs, 400);
    assert!(commits < jobs, "group commit: {commits} commits for {jobs} writes");
    assert_eq!(count_orgs(&f.store).await, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_violations_are_reported_as_such() {
    for e in engines() {
        let f = fresh(e);
        insert_org(&f.store, "org_a", "same").await.unwrap();
        let err = insert_org(&f.store, "org_b", "same").await.unwrap_err();
        assert!(matches!(err, StoreError::Unique(_)), "{e:?}: {err:?}");
    }
}

/// Organization `org_x` and its credential `cred_x` (no versions).
fn org_and_credential(tx: &mut dyn Tx) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO orgs (id, name, settings, created_at) VALUES ('org_x', 'x', '{}', 1)",
        &[],
    )?;
    tx.execute(
        "INSERT INTO credentials (id, org_id, scope_key, name, type, environment, labels, status, current_version, created_at, created_by, updated_at) \
         VALUES ('cred_x', 'org_x', 'org_x', 'c', 'password', 'dev', '{}', 'active', 1, 1, 'usr', 1)",
        &[],
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_one_current_version_per_credential_is_enforced_by_the_schema() {
    for e in engines() {
        let f = fresh(e);
        let r = f
            .store
            .write(|tx: &mut dyn Tx| {
                org_and_credential(tx)?;
                for v in 1..=2i64 {
                    tx.execute(
                        "INSERT INTO credential_versions (credential_id, version, state, public_fields, secret_fields_set, created_at, created_by, state_changed_at) \
                         VALUES ('cred_x', $1, 'current', '{}', '[]', 1, 'usr', 1)",
                        &[v.into()],
                    )?;
                }
                Ok::<_, StoreError>(())
            })
            .await;
        assert!(matches!(r, Err(StoreError::Unique(_))), "{e:?}: {r:?}");
    }
}

/// The encryption barrier: the sealed columns take a `Sealed` through `versions`, and any
/// other statement writing them is refused, on both engines (plain bytes never get there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_columns_are_written_only_through_the_typed_functions() {
    use credvault_crypto::{Binding, Keyring};
    use credvault_store::versions::{self, NewVersion};
    let keyring = Keyring::generate();
    let binding = Binding {
        org_id: "org_x",
        credential_id: "cred_x",
        version: 1,
    };
    let sealed = keyring.seal(&binding, b"{\"password\":\"hunter2\"}").unwrap();
    for e in engines() {
        let f = fresh(e);
        let s2 = sealed.clone();
        let r = f
            .store
            .write(move |tx: &mut dyn Tx| {
                org_and_credential(tx)?;
                versions::insert(
                    tx,
                    &NewVersion {
                        credential_id: "cred_x",
                        version: 1,
                        state: "current",
                        sealed: &s2,
                        public_fields: "{}",
                        secret_fields_set: "[\"password\"]",
                        created_at: 1,
                        created_by: "usr",
                        source_credential_id: None,
                    },
                )?;
                // Plain bytes by any other statement: refused, whatever the spelling.
                let plain = Value::Bytes(b"{\"password\":\"hunter2\"}".to_vec());
                for sql in [
                    "UPDATE credential_versions SET ciphertext = $1 WHERE credential_id = 'cred_x'",
                    "update credential_versions set WRAPPED_KEY = $1 where credential_id = 'cred_x'",
                ] {
                    let refused = tx.execute(sql, std::slice::from_ref(&plain));
                    assert!(matches!(refused, Err(StoreError::Barrier(_))), "{sql}: {refused:?}");
                    let refused = tx.query(sql, std::slice::from_ref(&plain));
                    assert!(matches!(refused, Err(StoreError::Barrier(_))), "{sql}: {refused:?}");
                }
                let refused = tx.execute(
                    "INSERT INTO credential_versions (credential_id, version, state, kek_id, wrapped_key, ciphertext, public_fields, secret_fields_set, created_at, created_by, state_changed_at) \
                     VALUES ('cred_x', 2, 'staged', 'k1', $1, $1, '{}', '[]', 1, 'usr', 1)",
                    std::slice::from_ref(&plain),
                );
                assert!(matches!(refused, Err(StoreError::Barrier(_))), "{refused:?}");
                // Reads pass, and what was written reads back as the same sealed secret.
                let row = tx.query_one(
                    &format!("SELECT {} FROM credential_versions WHERE credential_id = 'cred_x' AND version = 1 FOR UPDATE", versions::SEALED_COLS)
                        .replace(" FOR UPDATE", tx.for_update()),
                    &[],
                )?;
                versions::sealed_at(&row, 0)
            })
            .await;
        let back = r.unwrap_or_else(|err| panic!("{e:?}: {err}"));
        assert_eq!(back.as_ref(), Some(&sealed), "{e:?}");
        assert_eq!(
            &*keyring.open(&binding, &back.unwrap()).unwrap(),
            b"{\"password\":\"hunter2\"}"
        );
        // A destroyed version reads back as None.
        let n = f
            .store
            .write(|tx: &mut dyn Tx| {
                versions::destroy_all(tx, "cred_x", 2)?;
                let row = tx.query_one(
                    &format!(
                        "SELECT {} FROM credential_versions WHERE credential_id = 'cred_x'",
                        versions::SEALED_COLS
                    ),
                    &[],
                )?;
                Ok::<_, StoreError>(versions::sealed_at(&row, 0)?.is_none())
            })
            .await
            .unwrap();
        assert!(n, "{e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_a_store_keeps_data_and_does_not_migrate_twice() {
    let dir = std::env::temp_dir().join(format!("cv-store-{}", random_hex(6)));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("t.db").display());
    let u = url.clone();
    let s = off_runtime(move || Store::open(&u, &StoreOptions::default()).unwrap());
    insert_org(&s, "org_1", "one").await.unwrap();
    s.close();
    drop(s);
    let s = off_runtime(move || Store::open(&url, &StoreOptions::default()).unwrap());
    assert_eq!(count_orgs(&s).await, 1);
    let n = s
        .read(|tx: &mut dyn Tx| tx.query_one("SELECT COUNT(*) FROM schema_migrations", &[])?.int(0))
        .await
        .unwrap();
    assert_eq!(n, credvault_store::SCHEMA_VERSION);
    s.close();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_store_refuses_writes_cleanly() {
    let f = fresh(Engine::Sqlite);
    f.store.close();
    let err = insert_org(&f.store, "org_z", "z").await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

/// The PostgreSQL store over TLS (issue 19): with `sslmode=verify-full` and the test CA in
/// `sslrootcert` its sessions are encrypted; a wrong CA, a host the certificate does not name
/// and an expired certificate each keep it from opening, saying which; and a TLS-only server
/// refuses it in plain text. Needs the certificates and the TLS-only cluster scripts/test makes.
#[cfg(feature = "postgres-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgresql_store_verifies_the_servers_certificate_and_encrypts() {
    let var = |n: &str| std::env::var(n).unwrap_or_else(|_| panic!("{n} must be set (scripts/test sets it)"));
    let (admin, expired, dir) = (
        var("CREDVAULT_TEST_PG_URL"),
        var("CREDVAULT_TEST_PG_EXPIRED_URL"),
        var("CREDVAULT_TEST_TLS_DIR"),
    );
    let (ca, other) = (format!("{dir}/ca.pem"), format!("{dir}/other-ca.pem"));
    let open = |url: String| off_runtime(move || Store::open(&url, &StoreOptions::default()));
    // A database of its own (the store migrates what it opens).
    let name = format!("cvs_tls_{}", random_hex(6));
    let (a, n) = (admin.clone(), name.clone());
    off_runtime(move || {
        let mut c = postgres::Client::connect(&a, postgres::NoTls).unwrap();
        c.batch_execute(&format!("CREATE DATABASE {n}")).unwrap();
    });
    let admin_url = admin.clone();
    let admin = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let by_name = admin.replace("@127.0.0.1:", "@localhost:");
    assert_ne!(by_name, admin, "the test PostgreSQL is on 127.0.0.1");

    let encrypted = |store: &Store| {
        let store = store.clone();
        async move {
            store
                .read(|tx: &mut dyn Tx| {
                    tx.query_one(
                        "SELECT CASE WHEN ssl THEN 1 ELSE 0 END FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                        &[],
                    )
                })
                .await
                .unwrap()
                .int(0)
                .unwrap()
                == 1
        }
    };
    let store = open(format!("{by_name}?sslmode=verify-full&sslrootcert={ca}")).unwrap();
    assert!(encrypted(&store).await, "the session is encrypted");
    store.close();
    // Control: sslmode=disable on the same server is plain text.
    let plain = open(format!("{admin}?sslmode=disable")).unwrap();
    assert!(!encrypted(&plain).await);
    plain.close();
    // SCRAM bound to the TLS session (SCRAM-SHA-256-PLUS, tls-server-end-point): with
    // channel_binding=require the login fails unless the binding is made and checked.
    open(format!(
        "{by_name}?sslmode=verify-full&sslrootcert={ca}&channel_binding=require"
    ))
    .unwrap()
    .close();
    // Control: without TLS there is nothing to bind to, and require refuses.
    assert!(open(format!("{admin}?sslmode=disable&channel_binding=require")).is_err());

    let refused = |url: String, says: &'static str| {
        let r = open(url.clone());
        match r {
            Err(StoreError::Unavailable(m)) | Err(StoreError::Db(m)) => assert!(m.contains(says), "{url}: {m}"),
            Err(other) => panic!("{url}: {other}"),
            Ok(_) => panic!("{url}: opened"),
        }
    };
    refused(
        format!("{by_name}?sslmode=verify-full&sslrootcert={other}"),
        "not signed by a CA",
    );
    refused(
        format!("{admin}?sslmode=verify-full&sslrootcert={ca}"),
        "does not name the host",
    );
    let expired_by_name = expired.replace("@127.0.0.1:", "@localhost:");
    refused(
        format!("{expired_by_name}?sslmode=verify-full&sslrootcert={ca}"),
        "expired",
    );
    refused(format!("{expired}?sslmode=disable"), "no encryption");
    // verify-ca takes the certificate whatever name it was dialled by.
    open(format!("{admin}?sslmode=verify-ca&sslrootcert={ca}"))
        .unwrap()
        .close();
    off_runtime(move || {
        if let Ok(mut c) = postgres::Client::connect(&admin_url, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    });
}

/// A client certificate (`sslcert`, `sslkey`): scripts/test's PostgreSQL lets the user
/// `certuser` in only with a certificate of the test CA whose CN is its name (cert
/// authentication). With it the store opens (and migrates a database it owns); without it, or
/// with only half of it, it does not.
#[cfg(feature = "postgres-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgresql_store_logs_in_with_a_client_certificate() {
    let var = |n: &str| std::env::var(n).unwrap_or_else(|_| panic!("{n} must be set (scripts/test sets it)"));
    let (admin, dir) = (var("CREDVAULT_TEST_PG_URL"), var("CREDVAULT_TEST_TLS_DIR"));
    let name = format!("cvs_cert_{}", random_hex(6));
    let (a, n) = (admin.clone(), name.clone());
    off_runtime(move || {
        let mut c = postgres::Client::connect(&a, postgres::NoTls).unwrap();
        c.batch_execute("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'certuser') THEN CREATE ROLE certuser LOGIN; END IF; END $$")
            .unwrap();
        c.batch_execute(&format!("CREATE DATABASE {n} OWNER certuser")).unwrap();
    });
    let host = admin
        .rsplit_once('@')
        .unwrap()
        .1
        .rsplit_once('/')
        .unwrap()
        .0
        .replace("127.0.0.1", "localhost");
    let base = format!("postgres://certuser@{host}/{name}?sslmode=verify-full&sslrootcert={dir}/ca.pem");
    let open = |url: String| off_runtime(move || Store::open(&url, &StoreOptions::default()));

    let store = open(format!("{base}&sslcert={dir}/client.pem&sslkey={dir}/client.key")).unwrap();
    let who = store
        .read(|tx: &mut dyn Tx| tx.query_one("SELECT current_user", &[]))
        .await
        .unwrap()
        .text(0)
        .unwrap();
    assert_eq!(who, "certuser");
    store.close();
    // The control: the same URL without the certificate is refused by the server.
    match open(base.clone()) {
        Err(StoreError::Unavailable(m)) | Err(StoreError::Db(m)) => {
            assert!(m.contains("certificate") || m.contains("certuser"), "{m}")
        }
        Err(other) => panic!("without a certificate: {other}"),
        Ok(_) => panic!("opened without the client certificate"),
    }
    match open(format!("{base}&sslcert={dir}/client.pem")) {
        Err(StoreError::BadUrl(m)) => assert!(m.contains("go together"), "{m}"),
        other => panic!("half a certificate: {:?}", other.map(|_| ())),
    }
    off_runtime(move || {
        if let Ok(mut c) = postgres::Client::connect(&admin, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    });
}
