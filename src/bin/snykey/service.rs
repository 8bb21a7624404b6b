//! The commands a service manager or an orchestrator runs:
//! `snykey reload` (systemd's `ExecReload=`): the agent re-reads its config
//! file; this prints what it applied and what needs a restart, or why it
//! refused the file (exit 78). `snykey ready` (a Kubernetes probe): exit 0
//! when `/v1/ready` says the agent can serve tokens, 75 with the reason when not.

use crate::{Failure, routes};
use hyper::Method;
use snykey::client::AgentClient;
use snykey::wire::{Message, Reloaded};

pub async fn reload(client: &AgentClient) -> Result<(), Failure> {
    let r: Reloaded = client.call(Method::POST, routes::RELOAD, None).await?;
    print!("{}", describe(&r));
    Ok(())
}

pub async fn ready(client: &AgentClient) -> Result<(), Failure> {
    let r: Message = client.call(Method::GET, routes::READY, None).await?;
    println!("{}", r.message);
    Ok(())
}

/// What the agent did, a line per kind of change.
fn describe(r: &Reloaded) -> String {
    let from = match &r.file {
        Some(f) => format!("from {f}"),
        None => "(no config file: defaults and environment)".into(),
    };
    let mut out = format!("configuration reloaded {from}\n");
    if r.applied.is_empty() && r.restart_needed.is_empty() {
        out.push_str("nothing changed\n");
    }
    if !r.applied.is_empty() {
        out.push_str(&format!("applied: {}\n", r.applied.join(", ")));
    }
    if !r.restart_needed.is_empty() {
        out.push_str(&format!(
            "changed, but in force only after a restart (`systemctl restart snykey`): {}\n",
            r.restart_needed.join(", ")
        ));
    }
    out.push_str(&r.log_filter);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_applied_and_restart_keys_apart() {
        let r = Reloaded {
            file: Some("/etc/snykey/config.toml".into()),
            applied: vec!["server.log_level".into()],
            restart_needed: vec!["snyk.timeout".into()],
            log_filter: "log filter is now \"debug\"".into(),
        };
        let text = describe(&r);
        assert!(text.starts_with("configuration reloaded from /etc/snykey/config.toml\n"));
        assert!(text.contains("applied: server.log_level\n"));
        assert!(text.contains("after a restart (`systemctl restart snykey`): snyk.timeout\n"));
        assert!(!text.contains("nothing changed"));
        let same = Reloaded {
            file: None,
            applied: vec![],
            restart_needed: vec![],
            log_filter: "log filter is now \"info\"".into(),
        };
        assert!(describe(&same).contains("nothing changed\n"));
    }
}
