//! Users, keys, sessions, MFA and the audit log in the store, on SQLite
//! and PostgreSQL alike.

use outflow_store::accounts::{self, Role};
use outflow_store::audit::{self, Actor};
use outflow_store::users::{self, MfaRefusal, UserChange};
use outflow_store::{Store, StoreError};
use outflow_testkit::TestDb;
use serde_json::json;

const NOW: i64 = 1_790_000_000_000_000;
const BOOT: &str = "pk_test_0123456789";

async fn open(db: &TestDb) -> (Store, String) {
    let store = Store::open(&db.url()).await.expect("open");
    let boot = store
        .write(|ctx| accounts::bootstrap(ctx.conn, Some(BOOT), NOW))
        .await
        .expect("bootstrap")
        .expect("account");
    (store, boot.account_id)
}

async fn users_keys_and_roles(backend: &str) {
    let db = TestDb::by_name(backend);
    let (store, account) = open(&db).await;
    let a = account.clone();
    let (user, key) = store
        .write(move |ctx| {
            let u = users::create(
                ctx.conn,
                &a,
                " Ann@Example.com",
                Role::Manager,
                Some("$h"),
                NOW,
            )?;
            let dup = users::create(ctx.conn, &a, "ann@example.com", Role::Analyst, None, NOW);
            assert!(matches!(dup, Err(StoreError::Conflict(_))));
            let (_, key) = accounts::create_key(
                ctx.conn,
                &a,
                &u.id,
                "k",
                &["flows:write", "webhooks:write"],
                NOW,
            )?;
            Ok((u, key))
        })
        .await
        .expect("user and key");
    assert_eq!(user.email, "ann@example.com");
    let k = key.clone();
    let p = store
        .read(move |c| accounts::authenticate(c, &k))
        .await
        .unwrap()
        .expect("key authenticates");
    assert_eq!((p.role, p.mfa_enabled), (Role::Manager, false));
    assert!(p.has_scope("webhooks:write") && !p.has_scope("events:write"));

    // The role is read at every authentication: a demotion narrows the key.
    let (a, u) = (account.clone(), user.id.clone());
    store
        .write(move |ctx| {
            let change = UserChange {
                role: Some(Role::Analyst),
                ..UserChange::default()
            };
            users::update(ctx.conn, &a, &u, change, NOW).map(|_| ())
        })
        .await
        .unwrap();
    let k = key.clone();
    let p = store
        .read(move |c| accounts::authenticate(c, &k))
        .await
        .unwrap()
        .expect("still a key");
    assert!(p.has_scope("flows:read") && !p.has_scope("flows:write"));

    // The last owner can neither go nor be demoted; a deleted user's keys stop.
    let a = account.clone();
    let owner = store
        .read(move |c| users::list(c, &a))
        .await
        .unwrap()
        .into_iter()
        .find(|u| u.role == Role::Owner)
        .expect("owner");
    let (a, o) = (account.clone(), owner.id.clone());
    let err = store
        .write(move |ctx| users::delete(ctx.conn, &a, &o, NOW))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let (a, u) = (account.clone(), user.id.clone());
    store
        .write(move |ctx| users::delete(ctx.conn, &a, &u, NOW))
        .await
        .unwrap();
    let k = key.clone();
    assert_eq!(
        store
            .read(move |c| accounts::authenticate(c, &k))
            .await
            .unwrap(),
        None
    );
    let a = account.clone();
    let keys = store
        .read(move |c| accounts::list_keys(c, &a, None))
        .await
        .unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().any(|k| k.name == "k" && k.revoked == Some(NOW)));
    let rows = store
        .read(|c| Ok(c.query("SELECT key_hash FROM api_keys", &[])?))
        .await
        .unwrap();
    for r in rows {
        assert!(
            !r.text(0).unwrap().starts_with("pk_"),
            "keys are stored hashed"
        );
    }
}

async fn mfa_sessions_and_audit(backend: &str) {
    let db = TestDb::by_name(backend);
    let (store, account) = open(&db).await;
    let a = account.clone();
    let owner = store
        .read(move |c| users::list(c, &a))
        .await
        .unwrap()
        .remove(0)
        .id;
    let o = owner.clone();
    let secret = store
        .write(move |ctx| users::begin_mfa(ctx.conn, &o))
        .await
        .unwrap()
        .expect("enrolment starts");
    let code = users::totp_code(&secret, NOW).expect("code");
    let (o, c) = (owner.clone(), code.clone());
    let done = store
        .write(move |ctx| {
            assert_eq!(
                users::confirm_mfa(ctx.conn, &o, "000000", NOW)?,
                Err(MfaRefusal::Invalid)
            );
            let ok = users::confirm_mfa(ctx.conn, &o, &c, NOW)?;
            // The enrolment code cannot log in again.
            let replay = users::use_totp(ctx.conn, &o, Some(&c), NOW)?;
            let missing = users::use_totp(ctx.conn, &o, None, NOW)?;
            let again = users::begin_mfa(ctx.conn, &o)?;
            Ok((ok, replay, missing, again.err()))
        })
        .await
        .unwrap();
    assert_eq!(
        done,
        (
            Ok(()),
            Err(MfaRefusal::Invalid),
            Err(MfaRefusal::Required),
            Some(MfaRefusal::AlreadyEnabled)
        )
    );
    let p = store
        .read(|c| accounts::authenticate(c, BOOT))
        .await
        .unwrap()
        .expect("bootstrap key");
    assert!(p.mfa_enabled);

    // Sessions: the token is stored hashed, expires, and revocation ends it.
    let (a, o) = (account.clone(), owner.clone());
    let (sid, token) = store
        .write(move |ctx| users::open_session(ctx.conn, &a, &o, NOW, 1_000_000))
        .await
        .unwrap();
    let t = token.clone();
    let p = store
        .read(move |c| accounts::authenticate(c, &t))
        .await
        .unwrap()
        .expect("session");
    assert_eq!(
        (p.session_id.as_deref(), p.expires),
        (Some(sid.as_str()), Some(NOW + 1_000_000))
    );
    store
        .write(move |ctx| users::revoke_session(ctx.conn, &sid, NOW))
        .await
        .unwrap();
    let t = token.clone();
    assert_eq!(
        store
            .read(move |c| accounts::authenticate(c, &t))
            .await
            .unwrap(),
        None
    );

    // The audit log pages newest first.
    let a = account.clone();
    store
        .write(move |ctx| {
            let actor = Actor {
                user_id: Some("u".into()),
                ..Actor::default()
            };
            for i in 0..5 {
                audit::record(
                    ctx.conn,
                    &a,
                    &actor,
                    "flow.update",
                    "flow",
                    &format!("f{i}"),
                    &json!({"i": i}),
                    NOW + i,
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let a = account.clone();
    let first = store
        .read(move |c| audit::list(c, &a, None, 3))
        .await
        .unwrap();
    let ids: Vec<&str> = first.iter().map(|e| e.target_id.as_str()).collect();
    assert_eq!(ids, ["f4", "f3", "f2"]);
    let (a, before) = (account.clone(), first[2].seq);
    let rest = store
        .read(move |c| audit::list(c, &a, Some(before), 3))
        .await
        .unwrap();
    let ids: Vec<&str> = rest.iter().map(|e| e.target_id.as_str()).collect();
    assert_eq!(ids, ["f1", "f0"]);
    assert_eq!(rest[1].detail, json!({"i": 0}));
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name("sqlite").await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name("postgres").await } )*
        }
    };
}

suite!(users_keys_and_roles, mfa_sessions_and_audit);
