//! A three-master Redis Cluster, started by this test (C-01 adapted): a master is
//! stopped mid-traffic and redirects keep succeeding.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;
use crate::{spawn_pg, support};

struct Node {
    port: u16,
    child: Child,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One cluster node on a free port. A port found free can be taken by another
/// process before redis-server binds it, so a node that dies at start is retried on
/// a new port.
fn start_node(server: &str, cli: &std::path::Path, dir: &std::path::Path, i: usize) -> Node {
    for attempt in 0..5 {
        let port = crate::support::free_port();
        let log = dir.join(format!("node-{i}-{attempt}.log"));
        let mut child = Command::new(server)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
            .args(["--cluster-config-file", &format!("nodes-{i}-{attempt}.conf")])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ping = Command::new(cli)
                .args(["-p", &port.to_string(), "ping"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&ping.stdout).contains("PONG") {
                return Node { port, child };
            }
            if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                eprintln!(
                    "node {i} did not start on {port}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("redis cluster node {i} did not start");
}

fn start_cluster(server: &str, dir: &std::path::Path) -> Vec<Node> {
    let cli = std::path::Path::new(server).with_file_name("redis-cli");
    let nodes: Vec<Node> = (0..3).map(|i| start_node(server, &cli, dir, i)).collect();
    let mut create = Command::new(&cli);
    create.arg("--cluster").arg("create");
    for n in &nodes {
        create.arg(format!("127.0.0.1:{}", n.port));
    }
    let out = create
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = Command::new(&cli)
            .args(["-p", &nodes[0].port.to_string(), "cluster", "info"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
            break;
        }
        assert!(Instant::now() < deadline, "cluster never became ok");
        std::thread::sleep(Duration::from_millis(100));
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and redis-server (for a Redis Cluster): run scripts/test.sh"]
async fn c01_redis_cluster_master_stopped_mid_traffic_redirects_keep_succeeding() {
    let Some(server) = support::server("KURZ_TEST_REDIS_SERVER") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(&server, dir.path());
    let url = format!(
        "redis+cluster://{}",
        nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    );
    let Some(a) = spawn_pg(|c| {
        c.redis.url = Some(url.parse().unwrap());
        c.limits.free = 1000;
    })
    .await
    else {
        return;
    };
    let b = a.twin().await;
    let mut links = Vec::new();
    for i in 0..30 {
        links.push((
            a.create_code(&format!("https://example.com/c01/{i}")).await,
            format!("https://example.com/c01/{i}"),
        ));
    }
    // Through the cluster: B sees A's links, rate limits and health work.
    for (code, target) in &links {
        assert_eq!(location(&b.get(&format!("/{code}"), None).await), *target);
    }
    let key = a.user("cluster@example.com", "free").await;
    let res = a
        .create(
            Some(&key),
            &serde_json::json!({ "original_url": "https://example.com/rl" }),
        )
        .await;
    assert_eq!(res.headers()["x-ratelimit-limit"], "1000");
    let health: Value = a.get("/health", None).await.json().await.unwrap();
    assert_eq!(health["components"]["cache"], "healthy");

    // Traffic on both instances while one master is stopped.
    let stop_at = Instant::now() + Duration::from_millis(500);
    let end = Instant::now() + Duration::from_secs(4);
    let mut stopped = false;
    let mut served = 0;
    while Instant::now() < end {
        if !stopped && Instant::now() > stop_at {
            let mut victim = nodes.remove(1);
            victim.child.kill().unwrap();
            victim.child.wait().unwrap();
            stopped = true;
        }
        for (i, (code, target)) in links.iter().enumerate() {
            let app = if i % 2 == 0 { &a } else { &b };
            let res = app.get(&format!("/{code}"), None).await;
            assert_eq!(res.status(), 302, "redirect failed (master stopped: {stopped})");
            assert_eq!(location(&res), *target);
            served += 1;
        }
    }
    assert!(stopped);
    // New links still work end to end, from the store.
    let code = a.create_code("https://example.com/c01/after").await;
    assert_eq!(b.get(&format!("/{code}"), None).await.status(), 302);
    assert!(served > 100);
}
