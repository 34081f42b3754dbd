//! The Pubky SDK's auth flows with handoff as the relay: `handoff-pubky-interop RELAY_BASE`,
//! where RELAY_BASE is `http://HOST:PORT/link/` or `http://HOST:PORT/inbox/` (the SDK picks the
//! channel kind from the path). Run by tests/interop.rs (`make interop`); exits non-zero with
//! the reason on stderr if a step goes wrong; on success it prints `stopped` and `approving`
//! (step 3), then one line of `key=value` facts.
//!
//! 1. Cookie flow: the app starts it, the signer approves the `pubkyauth://` URL; the app must
//!    get the token, decrypted and verified, from the signer's key with the asked capabilities.
//! 2. Grant flow (the SDK's current one): the approval crosses the relay, then the SDK looks up
//!    the user's homeserver, which does not exist offline: that must fail as a Pkarr error,
//!    not as a relay or decryption error.
//! 3. Approve before the app polls: the app saves its grant flow and stops polling; this
//!    program prints `stopped` and waits for a line on stdin (the test waits until the relay
//!    has seen the app's poll go). The signer approves (over /link its POST waits at the
//!    relay); `approving`, and another line (the test checks the relay holds the message).
//!    Then the app restores the flow from its saved state, as a page reloaded after the phone
//!    backgrounded it would, and must still get the approval.
#![allow(deprecated)] // The cookie flow is deprecated in the SDK, but apps still run it.

use std::process::exit;
use std::time::Duration;

use pubky::{
    AuthFlowKind, Capabilities, ClientId, Error, Keypair, Pubky, PubkyCookieAuthFlow,
    PubkyGrantAuthFlow, PubkyHttpClient,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::timeout;

/// Each step gets this long; the relay's own long-poll timeouts are shorter.
const STEP: Duration = Duration::from_secs(30);

fn fail(message: String) -> ! {
    eprintln!("{message}");
    exit(1)
}

/// `what`, bounded by [`STEP`]; a step that takes longer fails the run.
async fn step<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    match timeout(STEP, future).await {
        Ok(value) => value,
        Err(_) => fail(format!("{what}: nothing within {STEP:?}")),
    }
}

/// Waits for the test to send a line on stdin.
async fn go_ahead(stdin: &mut BufReader<tokio::io::Stdin>) {
    let mut line = String::new();
    match step("the test's go-ahead", stdin.read_line(&mut line)).await {
        Ok(0) => fail("stdin closed before the go-ahead".into()),
        Ok(_) => {}
        Err(e) => fail(format!("stdin: {e}")),
    }
}

#[tokio::main]
async fn main() {
    let relay = match std::env::args().nth(1).map(|base| url::Url::parse(&base)) {
        Some(Ok(url)) => url,
        _ => fail("usage: handoff-pubky-interop RELAY_BASE (http://HOST:PORT/link/ or /inbox/)".into()),
    };
    let client = PubkyHttpClient::testnet().unwrap_or_else(|e| fail(format!("no client: {e}")));
    let pubky = Pubky::with_client(client.clone());
    let signer = pubky.signer(Keypair::random());
    let user = signer.public_key();
    let caps = Capabilities::builder()
        .read_write("/pub/handoff.interop/")
        .unwrap_or_else(|e| fail(format!("capabilities: {e}")))
        .finish();
    let client_id = ClientId::new("handoff.interop").unwrap_or_else(|e| fail(format!("{e}")));

    // 1. Cookie flow: the token itself.
    let flow = PubkyCookieAuthFlow::builder(&caps, AuthFlowKind::signin())
        .relay(relay.clone())
        .client(client.clone())
        .start()
        .unwrap_or_else(|e| fail(format!("cookie flow: {e}")));
    let url = flow.authorization_url();
    let named = url.query_pairs().find(|(key, _)| key == "relay").map(|(_, value)| value.into_owned());
    if named.as_deref() != Some(relay.as_str()) {
        fail(format!("the deep link does not name the relay {relay}: {url}"));
    }
    let url = url.to_string();
    let token = tokio::spawn(flow.await_token());
    step("approve (cookie)", signer.approve_auth(&url))
        .await
        .unwrap_or_else(|e| fail(format!("the signer could not approve: {e}")));
    let token = match step("await_token", token).await {
        Ok(Ok(token)) => token,
        Ok(Err(e)) => fail(format!("the app got no token: {e}")),
        Err(e) => fail(format!("await_token panicked: {e}")),
    };
    if token.public_key() != &user {
        fail(format!("token from {}, the signer is {user}", token.public_key()));
    }
    if token.capabilities().to_string() != caps.to_string() {
        fail(format!("token capabilities {}, asked for {caps}", token.capabilities()));
    }

    // 2. Grant flow: the approval crosses the relay, the homeserver lookup fails.
    let grant = PubkyGrantAuthFlow::builder(&caps, AuthFlowKind::signin(), client_id.clone())
        .relay(relay.clone())
        .client(client.clone())
        .start()
        .unwrap_or_else(|e| fail(format!("grant flow: {e}")));
    let grant_url = grant.authorization_url().to_string();
    let credential = tokio::spawn(grant.await_credential());
    step("approve (grant)", signer.approve_auth(&grant_url))
        .await
        .unwrap_or_else(|e| fail(format!("the signer could not approve the grant: {e}")));
    let grant_error = match step("await_credential", credential).await {
        Ok(Ok(_)) => fail("a grant credential without any homeserver".into()),
        Ok(Err(e)) => e,
        Err(e) => fail(format!("await_credential panicked: {e}")),
    };
    if !matches!(grant_error, Error::Pkarr(_)) {
        fail(format!("the grant failed, but not at the homeserver lookup: {grant_error:?}"));
    }

    // 3. Approve first: the app has stopped polling when the signer approves.
    let late = PubkyGrantAuthFlow::builder(&caps, AuthFlowKind::signin(), client_id)
        .relay(relay.clone())
        .client(client.clone())
        .start()
        .unwrap_or_else(|e| fail(format!("grant flow: {e}")));
    let late_url = late.authorization_url().to_string();
    let saved = late.save_local().unwrap_or_else(|| fail("the grant flow has no local state".into()));
    drop(late); // stops its poller, as a backgrounded page would
    let mut stdin = BufReader::new(tokio::io::stdin());
    println!("stopped");
    go_ahead(&mut stdin).await;
    let approval = tokio::spawn({
        let signer = signer.clone();
        async move { signer.approve_auth(&late_url).await }
    });
    println!("approving");
    go_ahead(&mut stdin).await;
    let restored = PubkyGrantAuthFlow::restore(saved, client)
        .unwrap_or_else(|e| fail(format!("the saved flow does not restore: {e}")));
    let late_error = match step("await_credential (restored)", restored.await_credential()).await {
        Ok(_) => fail("a grant credential without any homeserver".into()),
        Err(e) => e,
    };
    if !matches!(late_error, Error::Pkarr(_)) {
        fail(format!("the restored flow failed, but not at the lookup: {late_error:?}"));
    }
    match step("the signer's early approval", approval).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => fail(format!("the signer's early approval failed: {e}")),
        Err(e) => fail(format!("the approval panicked: {e}")),
    }
    println!("user={user} capabilities={caps} grant_error={grant_error}");
}
