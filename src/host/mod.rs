//! What this machine offers the children arctl runs, probed once: a hardware instruction
//! counter (and the counter itself), and what can confine a child (`sandbox`). A leaf module: the spec's host check (in the client's
//! `validate` and the daemon's `start`) and the child-process layer both read it.

pub mod perf;
pub mod sandbox;

pub use perf::instructions_supported;

/// The facts a spec is checked against on this machine.
pub fn facts() -> crate::spec::HostFacts {
    crate::spec::HostFacts {
        instructions: instructions_supported(),
        landlock: sandbox::landlock_abi(),
        network_namespaces: sandbox::namespaces().net.clone().map(|_| ()),
    }
}
