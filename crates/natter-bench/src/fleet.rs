//! The coordinator's side of the workers: spawns them (this binary, `worker` subcommand),
//! deals out the devices, sends commands and sums their counters and histograms.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;

use crate::cli::Common;
use crate::control::{Command, Counters, DeviceSpec, Event};
use crate::setup::{Account, Conversation};
use crate::{conn, stats};

/// The worker processes of one run.
pub struct Fleet {
    /// The worker processes, killed if the fleet is dropped before they finish.
    children: Vec<Child>,
    /// Where each worker reads its commands (JSON lines), by worker index.
    stdins: Vec<ChildStdin>,
    /// Every worker's events, tagged with its index, as its stdout is read.
    events: mpsc::UnboundedReceiver<(usize, Event)>,
    /// Each worker's counters as it last reported them.
    stats: Vec<Counters>,
    /// How many workers reported `LoadDone` since the last [`Fleet::load`].
    loads_done: usize,
}

/// What the workers reported at the end.
pub struct Finished {
    /// Summed counters.
    pub counters: Counters,
    /// Send-to-delivery latency (µs).
    pub delivery: Histogram<u64>,
    /// Send-to-ack latency (µs).
    pub ack: Histogram<u64>,
    /// Connection and server errors, at most a few per worker.
    pub errors: Vec<String>,
    /// Devices per node of their last connection.
    pub nodes: std::collections::BTreeMap<String, u64>,
}

/// The node (its WebSocket URL) each of `count` devices connects to: `--server`, or with
/// `--gateway` whatever its host assigner names for each, as clients of a cluster are told.
pub async fn assign_nodes(common: &Common, count: usize) -> anyhow::Result<Vec<String>> {
    if !common.gateway {
        return Ok(vec![natter_client::ws_url(&common.server); count]);
    }
    let client = natter_client::Client::new(&common.server)?;
    let ask = |_| async {
        // Strictly: a server without a gateway must not quietly become the only node measured.
        let gateway = client.cluster_gateway().await?.with_context(|| {
            format!(
                "--gateway: {} has no host assigner (GET /v1/gateway is 404), so there is no \
                 cluster to spread devices over; leave --gateway out to measure that node alone",
                common.server
            )
        })?;
        anyhow::Ok(gateway.url)
    };
    let nodes: Vec<String> = futures_util::stream::iter(0..count)
        .map(ask)
        .buffered(common.setup_concurrency.max(1))
        .try_collect()
        .await
        .context("asking the host assigner")?;
    let mut spread: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for node in &nodes {
        *spread.entry(node.as_str()).or_default() += 1;
    }
    eprintln!("devices per node, as assigned: {spread:?}");
    Ok(nodes)
}

/// Each account as a device, with its node, its source address and the conversations it
/// sends to. `nodes` has one entry per account (see [`assign_nodes`]); source addresses
/// go round over `--source-addrs`.
pub fn devices(
    common: &Common,
    users: &[Account],
    conversations: &[Conversation],
    nodes: &[String],
) -> Vec<DeviceSpec> {
    let mut specs: Vec<DeviceSpec> = users
        .iter()
        .zip(nodes)
        .enumerate()
        .map(|(i, (user, node))| DeviceSpec {
            token: user.token.clone(),
            server: node.clone(),
            source: conn::source_addr(i, common.source_addrs),
            conversations: Vec::new(),
        })
        .collect();
    for conversation in conversations {
        for &member in &conversation.members {
            specs[member].conversations.push(conversation.id);
        }
    }
    specs
}

impl Fleet {
    /// Starts the workers, dealing the devices out round-robin, and sends them their plans.
    /// There are `--workers` of them, fewer when there are fewer devices; fails when one does
    /// not start or take its plan.
    pub async fn start(
        common: &Common,
        devices: Vec<DeviceSpec>,
        run: u64,
    ) -> anyhow::Result<Self> {
        let count = (common.workers as usize).min(devices.len()).max(1);
        let mut shares: Vec<Vec<DeviceSpec>> = vec![Vec::new(); count];
        for (i, device) in devices.into_iter().enumerate() {
            shares[i % count].push(device);
        }
        let exe = std::env::current_exe().context("finding natter-bench itself")?;
        let (sender, events) = mpsc::unbounded_channel();
        let mut fleet = Self {
            children: Vec::new(),
            stdins: Vec::new(),
            events,
            stats: vec![Counters::default(); count],
            loads_done: 0,
        };
        for (index, devices) in shares.into_iter().enumerate() {
            let mut child = tokio::process::Command::new(&exe)
                .arg("worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("starting a worker")?;
            let mut lines = BufReader::new(child.stdout.take().context("worker stdout")?).lines();
            let sender = sender.clone();
            tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    match serde_json::from_str(&line) {
                        Ok(event) => {
                            let _ = sender.send((index, event));
                        }
                        Err(error) => eprintln!("worker {index}: bad event ({error}): {line}"),
                    }
                }
            });
            fleet
                .stdins
                .push(child.stdin.take().context("worker stdin")?);
            fleet.children.push(child);
            let plan = Command::Plan {
                devices,
                payload_bytes: common.payload_bytes as usize,
                run,
                connect_concurrency: common.connect_concurrency,
                ack_interval_ms: common.ack_interval_ms,
                gateway: common.gateway.then(|| common.server.clone()),
            };
            fleet.send(index, &plan).await?;
        }
        Ok(fleet)
    }

    /// The workers' process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(Child::id).collect()
    }

    /// Writes one command to worker `index` as a JSON line; fails when the worker went away.
    async fn send(&mut self, index: usize, command: &Command) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(command)?;
        line.push(b'\n');
        let stdin = &mut self.stdins[index];
        stdin.write_all(&line).await.context("a worker went away")?;
        stdin.flush().await.context("a worker went away")
    }

    /// Sends a command to every worker.
    pub async fn broadcast(&mut self, command: &Command) -> anyhow::Result<()> {
        for index in 0..self.stdins.len() {
            self.send(index, command).await?;
        }
        Ok(())
    }

    /// Starts sending `rate` messages a second in total for `secs` seconds, split evenly over
    /// the workers; [`Fleet::loaded`] tells when they all issued their share.
    pub async fn load(&mut self, rate: f64, secs: f64) -> anyhow::Result<()> {
        #[allow(clippy::cast_precision_loss)]
        let share = rate / self.stdins.len() as f64;
        self.loads_done = 0;
        self.broadcast(&Command::Load { rate: share, secs }).await
    }

    /// The counters summed over the workers, as last reported.
    pub fn totals(&self) -> Counters {
        let mut total = Counters::default();
        for counters in &self.stats {
            total.add(counters);
        }
        total
    }

    /// True once every worker finished its `Load`.
    pub fn loaded(&self) -> bool {
        self.loads_done == self.stdins.len()
    }

    /// Follows the workers' reports until `done` holds (true) or `timeout` passes (false),
    /// showing `progress` on `bar`. Fails when every worker went away or one sent its final
    /// report early.
    pub async fn wait_until(
        &mut self,
        timeout: Duration,
        bar: &ProgressBar,
        progress: impl Fn(&Counters) -> u64,
        done: impl Fn(&Self) -> bool,
    ) -> anyhow::Result<bool> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            bar.set_position(progress(&self.totals()));
            if done(self) {
                return Ok(true);
            }
            let event = match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => return Ok(false),
                Ok(None) => bail!("every worker went away"),
                Ok(Some(event)) => event,
            };
            match event {
                (index, Event::Stats(counters)) => self.stats[index] = counters,
                (_, Event::LoadDone) => self.loads_done += 1,
                (index, Event::Final { .. }) => bail!("worker {index} finished early"),
            }
        }
    }

    /// Tells the workers to finish and collects their final reports, summed. Fails when a
    /// worker exits without one or they take longer than a minute.
    pub async fn finish(mut self) -> anyhow::Result<Finished> {
        self.broadcast(&Command::Finish).await?;
        let mut finished = Finished {
            counters: Counters::default(),
            delivery: stats::histogram(),
            ack: stats::histogram(),
            errors: Vec::new(),
            nodes: std::collections::BTreeMap::new(),
        };
        let mut remaining = self.stdins.len();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while remaining > 0 {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .context("workers did not finish in time")?
                .context("a worker exited without its final report")?;
            if let (
                _,
                Event::Final {
                    counters,
                    delivery,
                    ack,
                    errors,
                    nodes,
                },
            ) = event
            {
                for (node, devices) in nodes {
                    *finished.nodes.entry(node).or_default() += devices;
                }
                finished.counters.add(&counters);
                stats::merge(&mut finished.delivery, &delivery);
                stats::merge(&mut finished.ack, &ack);
                finished.errors.extend(errors);
                remaining -= 1;
            }
        }
        for child in &mut self.children {
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
        Ok(finished)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::cli::Cli;

    #[tokio::test]
    async fn gateway_against_a_server_without_one_is_an_error() {
        // A server with no host assigner: 404 to everything.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = [0; 4096];
                let _ = socket.read(&mut request).await;
                let answer =
                    "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        let cli = Cli::try_parse_from(["natter-bench", "--gateway", "--server", &server, "idle"])
            .unwrap();
        let error = super::assign_nodes(&cli.common, 3)
            .await
            .expect_err("no gateway to ask");
        assert!(
            format!("{error:#}").contains("has no host assigner"),
            "{error:#}"
        );
    }
}
