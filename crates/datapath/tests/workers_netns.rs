//! The miss workers (`midonet_datapath::workers`) on real traffic, for both
//! providers: two VMs on one host namespace, a handler that installs one
//! exact flow per UDP source port and takes a while to decide (standing in
//! for a simulation), run on two worker threads.
//!
//! A VM sends bursts of datagrams, each burst from a new source port: the
//! burst's first packet misses and is handed to a worker; the packets
//! behind it miss too (the flow is not there yet) and join it instead of
//! being simulated again. Checks: every datagram arrives, in order within
//! its burst; each source port is simulated exactly once; both workers
//! took connections; nothing was dropped for a full queue.
//!
//! The handler answers a burst only once the sender has sent all of it, so
//! every packet of the burst is either joined to the miss or waiting in the
//! upcall ring when the flow is installed. Without that, a sender slowed
//! down mid-burst (two CPUs, two spinning workers) has packets still in the
//! ring overtaken by later ones that take the freshly installed flow in the
//! kernel: the window every upcall datapath has (OVS's too), which no
//! ordering of install and execute in the agent closes. ARCHITECTURE.md
//! ("Miss workers") says so.
//!
//! `MDW_COST_US` sets the handler's cost per miss (default 300 µs).
//!
//! Needs root; fails saying so unless MIDONET_SKIP_NETNS=1.

use std::net::{SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use midonet_datapath::ebpf::{EbpfConfig, EbpfDatapath};
use midonet_datapath::sys::enter_netns;
use midonet_datapath::userspace::{UserspaceConfig, UserspaceDatapath};
use midonet_datapath::{
    Action, Actions, Datapath, DpStats, DropReason, FlowInstall, FlowKey, FlowMask, InPort,
    MacAddr, MissDecision, PortNo, UpcallHandler,
};
use midonet_flow::FieldId;
use midonet_testkit::{add_neigh, Lab, Vm};
use parking_lot::Mutex;

mod common;
use common::{env_u64, mac, vm};

/// Bursts (one source port each) and datagrams per burst.
const BURSTS: u16 = 50;
const PER_BURST: u16 = 20;
/// Source port of the first burst; burst `i` comes from `FIRST_PORT + i`.
const FIRST_PORT: u16 = 20000;

/// Installs an exact flow per (in port, MACs, addresses, protocol, ports),
/// after `cost` of busy work and once the burst's sender is done with it;
/// records which thread decided each key.
struct ExactSlow {
    routes: Vec<(MacAddr, PortNo)>,
    cost: Duration,
    seen: Seen,
    /// Bursts sent in full so far.
    sent: Arc<AtomicU16>,
}

/// Which worker thread decided each key.
type Seen = Arc<Mutex<Vec<(String, FlowKey)>>>;

impl UpcallHandler for ExactSlow {
    fn on_miss(&mut self, key: &FlowKey, _frame: &[u8], _in_port: InPort) -> MissDecision {
        let until = Instant::now() + self.cost;
        let burst = key.l4_src.wrapping_sub(FIRST_PORT);
        let give_up = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until
            || (key.l4_dst == 9100
                && self.sent.load(Ordering::Acquire) <= burst
                && Instant::now() < give_up)
        {
            std::hint::spin_loop();
        }
        let me = std::thread::current().name().unwrap_or_default().to_owned();
        self.seen.lock().push((me, *key));
        let Some(&(_, out)) = self.routes.iter().find(|(m, _)| *m == key.eth_dst) else {
            return MissDecision::drop();
        };
        let mut mask = FlowMask::empty();
        for f in [
            FieldId::InPort,
            FieldId::EthSrc,
            FieldId::EthDst,
            FieldId::EthType,
            FieldId::Ipv4Src,
            FieldId::Ipv4Dst,
            FieldId::IpProto,
            FieldId::L4Src,
            FieldId::L4Dst,
        ] {
            mask.mark(f);
        }
        let actions: Actions = [Action::Output(out)].into_iter().collect();
        MissDecision::install(FlowInstall { mask, actions, tags: vec![1], idle_timeout_ms: 0 })
    }
}

/// Sends the bursts from `a` to `b` (a pause between bursts so the
/// receiver's socket never overflows); returns what arrived, as
/// (source port, sequence) in arrival order.
fn bursts(a: &Vm, b: &Vm, sent: &Arc<AtomicU16>) -> Vec<(u16, u16)> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let total = usize::from(BURSTS * PER_BURST);
    let rx = {
        let ns = b.ns.clone();
        std::thread::spawn(move || {
            enter_netns(&ns).expect("enter b");
            let s = UdpSocket::bind("0.0.0.0:9100").expect("bind");
            s.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
            ready_tx.send(()).expect("ready");
            let mut got = Vec::with_capacity(total);
            let mut buf = [0u8; 64];
            while got.len() < total {
                match s.recv_from(&mut buf) {
                    Ok((2, from)) => got.push((from.port(), u16::from_be_bytes([buf[0], buf[1]]))),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            got
        })
    };
    ready_rx.recv().expect("receiver ready");
    let ns = a.ns.clone();
    let to = SocketAddrV4::new(b.ip, 9100);
    let sent = sent.clone();
    std::thread::spawn(move || {
        enter_netns(&ns).expect("enter a");
        for i in 0..BURSTS {
            let s = UdpSocket::bind(("0.0.0.0", FIRST_PORT + i)).expect("bind sender");
            for seq in 0..PER_BURST {
                s.send_to(&seq.to_be_bytes(), to).expect("send");
            }
            sent.store(i + 1, Ordering::Release);
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .join()
    .expect("sender");
    rx.join().expect("receiver")
}

fn check(provider: &str, got: &[(u16, u16)], seen: &[(String, FlowKey)], st: &DpStats) {
    eprintln!(
        "{provider}: {} of {} datagrams; workers {:?}; misses simulated {}",
        got.len(),
        BURSTS * PER_BURST,
        st.workers,
        seen.len()
    );
    assert_eq!(got.len(), usize::from(BURSTS * PER_BURST), "{provider}: every datagram arrived");
    for i in 0..BURSTS {
        let seqs: Vec<u16> =
            got.iter().filter(|(p, _)| *p == FIRST_PORT + i).map(|(_, s)| *s).collect();
        assert_eq!(seqs, (0..PER_BURST).collect::<Vec<_>>(), "{provider}: burst {i} in order");
    }
    let to_b: Vec<&(String, FlowKey)> = seen.iter().filter(|(_, k)| k.l4_dst == 9100).collect();
    assert_eq!(to_b.len(), usize::from(BURSTS), "{provider}: each source port simulated once");
    let threads: std::collections::HashSet<&str> = to_b.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(threads.len(), 2, "{provider}: both workers took connections: {threads:?}");
    assert!(st.workers.joined > 0, "{provider}: packets behind a miss joined it: {:?}", st.workers);
    assert_eq!(st.drops.get(DropReason::MissBacklog), 0);
}

fn lab(name: &str, octet: u8) -> (Lab, String, Vm, Vm) {
    let mut lab = Lab::new(name).expect("lab");
    let h = lab.add_host("h").expect("host");
    let a = vm(&mut lab, "a", &h, &format!("198.19.{octet}.1/24"), "02:00:00:00:77:01", 1500);
    let b = vm(&mut lab, "b", &h, &format!("198.19.{octet}.2/24"), "02:00:00:00:77:02", 1500);
    add_neigh(&a.ns, &a.vm_if, b.ip, &b.mac).expect("neigh");
    add_neigh(&b.ns, &b.vm_if, a.ip, &a.mac).expect("neigh");
    (lab, h, a, b)
}

fn handlers(
    routes: &[(MacAddr, PortNo)],
    seen: &Seen,
    sent: &Arc<AtomicU16>,
) -> Vec<Box<dyn UpcallHandler>> {
    (0..2)
        .map(|_| {
            Box::new(ExactSlow {
                routes: routes.to_vec(),
                cost: Duration::from_micros(env_u64("MDW_COST_US", 300)),
                seen: seen.clone(),
                sent: sent.clone(),
            }) as Box<dyn UpcallHandler>
        })
        .collect()
}

/// Binds `a` and `b` on `dp`, gives it two workers with `set_workers`,
/// sends the bursts and checks them; returns what the check said.
fn run(
    provider: &str,
    dp: &dyn Datapath,
    set_workers: impl FnOnce(Vec<Box<dyn UpcallHandler>>),
    a: &Vm,
    b: &Vm,
) -> std::thread::Result<()> {
    let pa = dp.add_vport(&a.host_if).expect("vport a");
    let pb = dp.add_vport(&b.host_if).expect("vport b");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sent = Arc::new(AtomicU16::new(0));
    set_workers(handlers(&[(mac(b), pb), (mac(a), pa)], &seen, &sent));
    let got = bursts(a, b, &sent);
    let st = dp.stats().expect("stats");
    let seen = seen.lock().clone();
    std::panic::catch_unwind(|| check(provider, &got, &seen, &st))
}

#[test]
fn userspace_misses_on_two_workers_join_and_lose_nothing() {
    if !midonet_testkit::skip::netns_or_skip("datapath::workers_netns userspace", &["ip"]) {
        return;
    }
    let (_lab, h, a, b) = lab("mdw", 77);
    let dp = UserspaceDatapath::start(
        UserspaceConfig { name: "mdw-dp".into(), netns: Some(h), ..UserspaceConfig::default() },
        None,
    )
    .expect("start");
    let set = |hs| dp.set_miss_workers(hs).expect("workers");
    if let Err(e) = run("userspace", &dp, set, &a, &b) {
        std::panic::resume_unwind(e);
    }
    // Back to inline: the next port is simulated on the datapath thread.
    dp.set_miss_workers(Vec::new()).expect("inline");
    assert_eq!(dp.stats().expect("stats").workers, Default::default());
}

#[test]
fn ebpf_misses_on_two_workers_join_and_lose_nothing() {
    if !midonet_testkit::skip::netns_or_skip("datapath::workers_netns ebpf", &["ip"]) {
        return;
    }
    if let Err(e) = midonet_datapath::ebpf::available() {
        panic!("the ebpf provider is not available: {e}");
    }
    let (_lab, h, a, b) = lab("mdx", 78);
    let dp = EbpfDatapath::start(
        EbpfConfig {
            name: format!("mdx-dp-{}", std::process::id()),
            netns: Some(h),
            ..EbpfConfig::default()
        },
        None,
    )
    .expect("start");
    let r = run("ebpf", &dp, |hs| dp.set_miss_workers(hs).expect("workers"), &a, &b);
    // The kernel datapath outlives its handle: remove it whatever happened.
    dp.destroy();
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
}
