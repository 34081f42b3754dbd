// The real Pubky SDK's pubkyauth flow with handoff as its HTTP relay: `node flow.mjs RELAY_BASE`,
// e.g. `http://127.0.0.1:8080/link/`. Run by tests/interop.rs (`make interop`); exits non-zero
// with the reason on stderr if any step goes wrong, prints one JSON line on success.
//
// 1. The app starts an auth-only flow (awaitToken) with RELAY_BASE as its relay, the signer
//    approves the pubkyauth:// URL; the app must get the token, decrypted, from the signer's key.
// 2. The app starts a sign-in flow (awaitApproval), the signer approves; the token crosses the
//    relay again, then the SDK looks up the user's homeserver, which does not exist (a testnet
//    pointed at 127.0.0.1 with no Pkarr relay): that must fail as a Pkarr lookup, not a relay error.
// 3. The signer approves before the app polls: the SDK's GETs to the relay are held back in this
//    process while the signer's POST goes out; flow.mjs prints `posted` and waits for a line on
//    stdin (the test checks /health shows the message held and nobody waiting), then lets the
//    app's GET go. The relay kept the POST (protocol §2): the app must still get the token.
import { createInterface } from "node:readline";
import { AuthFlowKind, AuthToken, Keypair, Pubky } from "@synonymdev/pubky";

const relay = process.argv[2];
if (!relay) {
  console.error("usage: node flow.mjs RELAY_BASE");
  process.exit(2);
}
const CAPS = "/pub/handoff.interop/:rw";
const LIMIT_MS = 30000;

function fail(message) {
  console.error(message);
  process.exit(1);
}

function within(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${LIMIT_MS} ms`)), LIMIT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const describe = (e) => `${e?.name}: ${e?.message}`;

// A promise that may reject before this script gets around to awaiting it: its outcome is
// caught at once (Node ends the process on a rejection nobody handles yet).
const settled = (promise) => promise.then((value) => ({ value }), (error) => ({ error }));

// The SDK fetches through globalThis.fetch: while `held` is a promise, GETs wait for it.
let held = null;
let heldGets = 0;
const realFetch = globalThis.fetch;
globalThis.fetch = async (input, init) => {
  const method = (init?.method ?? input?.method ?? "GET").toUpperCase();
  if (held && method === "GET") {
    heldGets++;
    await held;
  }
  return realFetch(input, init);
};
const stdin = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => stdin.once("line", resolve));

const pubky = Pubky.testnet("127.0.0.1");
const signer = pubky.signer(Keypair.random());
const user = signer.publicKey.toString();

// 1. Auth only: the token itself.
const flow = pubky.startAuthFlow(CAPS, AuthFlowKind.signin(), relay);
const url = flow.authorizationUrl;
if (!url.includes(`relay=${relay}`)) fail(`the deep link does not name the relay: ${url}`);
const tokenArrives = settled(within(flow.awaitToken(), "awaitToken"));
await within(signer.approveAuthRequest(url), "approveAuthRequest").catch((e) =>
  fail(`the signer could not approve: ${describe(e)}`),
);
const arrived = await tokenArrives;
if (arrived.error) fail(`the app got no token: ${describe(arrived.error)}`);
const token = arrived.value;
if (token.publicKey.toString() !== user) {
  fail(`token from ${token.publicKey.toString()}, the signer is ${user}`);
}
const verified = AuthToken.verify(token.toBytes());
if (verified.publicKey.toString() !== user) fail("the token does not verify");
if (JSON.stringify(token.capabilities) !== JSON.stringify([CAPS])) {
  fail(`token capabilities ${JSON.stringify(token.capabilities)}, asked for ${CAPS}`);
}

// 2. Sign-in: the token crosses the relay, the homeserver lookup fails.
const signin = pubky.startAuthFlow(CAPS, AuthFlowKind.signin(), relay);
// The app gets the token and fails its lookup while the signer's POST may still be finishing.
const session = settled(within(signin.awaitApproval(), "awaitApproval"));
await within(signer.approveAuthRequest(signin.authorizationUrl), "approveAuthRequest").catch((e) =>
  fail(`the signer could not approve the sign-in: ${describe(e)}`),
);
const { error } = await session;
if (!error) fail("a session without any homeserver");
if (error?.name !== "PkarrError" || !error.message.includes(`_pubky.${user.replace(/^pubky/, "")}`)) {
  fail(`the sign-in failed, but not at the homeserver lookup: ${describe(error)}`);
}

// 3. Approve first: the app's GET is held until the test has seen the POST held at the relay.
let release;
held = new Promise((resolve) => (release = resolve));
const late = pubky.startAuthFlow(CAPS, AuthFlowKind.signin(), relay);
const approved = settled(within(signer.approveAuthRequest(late.authorizationUrl), "approveAuthRequest"));
const lateToken = settled(within(late.awaitToken(), "awaitToken"));
console.log("posted");
await within(nextLine(), "the test's go-ahead");
if (heldGets === 0) fail("the app sent no GET to hold back: the order is not proven");
held = null;
release();
const late3 = await lateToken;
if (late3.error) fail(`the app got no token after the approval: ${describe(late3.error)}`);
const approval3 = await approved;
if (approval3.error) fail(`the signer's early approval failed: ${describe(approval3.error)}`);
const token3 = late3.value;
if (token3.publicKey.toString() !== user) fail(`late token from ${token3.publicKey.toString()}`);
stdin.close();

console.log(
  JSON.stringify({ user, capabilities: token.capabilities, signin_error: describe(error), held_gets: heldGets }),
);
