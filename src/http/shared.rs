//! What the workers share ([`Shared`]): the configuration, the gate with its
//! state, the way to the registry thread and to the outbox, and the gauges. Made once at start
//! (`main.rs`), read by every worker.

use std::sync::Arc;

use super::gate::Gate;
use super::inbound::ToRegistry;
use super::outbox::Outbox;
use crate::auth::TokenStore;
use crate::config::Config;
use crate::limits::MemoryBudget;
use crate::metrics::Gauges;

/// What the workers share.
pub struct Shared {
    /// The configuration.
    pub config: Arc<Config>,
    /// Where relay requests go.
    pub registry: ToRegistry,
    /// Where answers go.
    pub outbox: Outbox,
    /// Live numbers.
    pub gauges: Arc<Gauges>,
    /// What decides connections and request heads, with its state.
    pub gate: Gate,
}

impl Shared {
    /// What the workers share, for `config`, checking `tokens` if given.
    pub fn new(
        config: Config,
        registry: ToRegistry,
        outbox: Outbox,
        gauges: Arc<Gauges>,
        memory: Arc<MemoryBudget>,
        tokens: Option<Arc<TokenStore>>,
    ) -> Shared {
        let config = Arc::new(config);
        let gate = Gate::new(Arc::clone(&config), memory, tokens);
        Shared { config, registry, outbox, gauges, gate }
    }
}
