//! The in-memory provider: vports are names, frames are injected by the
//! test and outputs are captured, tunnel datagrams are captured whole (VXLAN
//! header included) so a test can carry them to another dummy datapath (a
//! fake tunnel peer) with [`DummyDatapath::inject_tunnel`].
//!
//! It runs the very same [`Core`] pipeline as the userspace provider,
//! synchronously on the caller's thread under a mutex, so the agent's tests
//! exercise the real flow table, executor and counters.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use parking_lot::Mutex;

use crate::pipeline::{Core, Counters, Io};
use crate::sys::{Slot, VnetHdr};
use crate::{
    Actions, Datapath, DpError, DpStats, FlowId, FlowInfo, FlowInstall, FlowKey, PortNo, TableConfig,
    UpcallHandler,
};

/// A frame captured on a vport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub frame: Vec<u8>,
    pub vnet: VnetHdr,
}

/// A datagram captured on the tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelPacket {
    pub dst: Ipv4Addr,
    /// VXLAN header + inner frame, as it would be on the wire.
    pub datagram: Vec<u8>,
}

impl TunnelPacket {
    /// VNI of the datagram.
    pub fn vni(&self) -> Option<u32> {
        crate::vxlan::decode(&self.datagram).ok().map(|(v, _)| v)
    }

    /// The inner frame.
    pub fn inner(&self) -> &[u8] {
        self.datagram.get(crate::vxlan::VXLAN_HDR_LEN..).unwrap_or(&[])
    }
}

#[derive(Default)]
pub struct DummyIo {
    outputs: BTreeMap<PortNo, Vec<Captured>>,
    tunnel: Vec<TunnelPacket>,
}

impl Io for DummyIo {
    fn output(&mut self, port: PortNo, slot: &Slot, counters: &mut Counters) -> bool {
        match self.outputs.get_mut(&port) {
            Some(q) => {
                q.push(Captured { frame: slot.frame().to_vec(), vnet: slot.vnet });
                let c = counters.port(port);
                c.tx_packets += 1;
                c.tx_bytes += slot.len as u64;
                true
            }
            None => false,
        }
    }

    fn tunnel(&mut self, dst: Ipv4Addr, hdr: [u8; 8], slot: &Slot, counters: &mut Counters) {
        let mut datagram = hdr.to_vec();
        datagram.extend_from_slice(slot.frame());
        counters.tunnel.tx_packets += 1;
        counters.tunnel.tx_bytes += datagram.len() as u64;
        self.tunnel.push(TunnelPacket { dst, datagram });
    }

    fn flush(&mut self, _counters: &mut Counters) {}
}

/// See the module docs.
pub struct DummyDatapath {
    core: Mutex<Core<DummyIo>>,
}

impl DummyDatapath {
    pub fn new(handler: Option<Box<dyn UpcallHandler>>) -> Self {
        Self::with_table(handler, TableConfig::default())
    }

    pub fn with_table(handler: Option<Box<dyn UpcallHandler>>, table: TableConfig) -> Self {
        DummyDatapath { core: Mutex::new(Core::new(DummyIo::default(), handler, table)) }
    }

    /// Replace the upcall handler.
    pub fn set_handler(&self, handler: Option<Box<dyn UpcallHandler>>) {
        self.core.lock().handler = handler;
    }

    /// A frame arrives on `port` (as if from the VM).
    pub fn inject(&self, port: PortNo, frame: &[u8]) {
        self.inject_vnet(port, frame, VnetHdr::default());
    }

    /// Like [`Self::inject`] with offload metadata.
    pub fn inject_vnet(&self, port: PortNo, frame: &[u8], vnet: VnetHdr) {
        let mut c = self.core.lock();
        c.tick();
        let mut s = Slot::from_frame(frame);
        s.vnet = vnet;
        if c.has_port(port) {
            c.process_port(port, &mut s);
        } else {
            c.counters.drop(crate::DropReason::UnknownPort);
        }
        c.flush();
    }

    /// A VXLAN datagram (header + inner frame) arrives from the underlay.
    pub fn inject_tunnel(&self, datagram: &[u8]) {
        let mut c = self.core.lock();
        c.tick();
        let mut s = Slot::from_frame(datagram);
        c.process_tunnel(&mut s);
        c.flush();
    }

    /// Take what was output on `port` so far.
    pub fn take_output(&self, port: PortNo) -> Vec<Captured> {
        self.core.lock().io.outputs.get_mut(&port).map(std::mem::take).unwrap_or_default()
    }

    /// Take the tunnel datagrams sent so far.
    pub fn take_tunnel(&self) -> Vec<TunnelPacket> {
        std::mem::take(&mut self.core.lock().io.tunnel)
    }

    /// Run idle expiry now; returns how many flows went.
    pub fn expire(&self) -> usize {
        self.core.lock().expire()
    }
}

impl Datapath for DummyDatapath {
    fn add_vport(&self, ifname: &str) -> Result<PortNo, DpError> {
        let mut c = self.core.lock();
        let p = c.alloc_port(ifname)?;
        c.io.outputs.insert(p, Vec::new());
        Ok(p)
    }

    fn remove_vport(&self, port: PortNo) -> Result<(), DpError> {
        let mut c = self.core.lock();
        c.free_port(port)?;
        c.io.outputs.remove(&port);
        Ok(())
    }

    fn bind_tunnel_key(&self, key: u32, port: PortNo) -> Result<(), DpError> {
        self.core.lock().bind_tunnel_key(key, port)
    }

    fn unbind_tunnel_key(&self, key: u32) -> Result<(), DpError> {
        self.core.lock().tunnel_ports.remove(&(key & 0x00ff_ffff));
        Ok(())
    }

    fn install_flow(&self, key: FlowKey, flow: FlowInstall) -> Result<FlowId, DpError> {
        let mut c = self.core.lock();
        c.tick();
        c.install(&key, flow)
    }

    fn invalidate_tags(&self, tags: Vec<u64>) -> Result<usize, DpError> {
        Ok(self.core.lock().table.invalidate_tags(&tags))
    }

    fn flush_flows(&self) -> Result<usize, DpError> {
        Ok(self.core.lock().table.flush())
    }

    fn execute(&self, frame: Vec<u8>, actions: Actions) -> Result<(), DpError> {
        let mut c = self.core.lock();
        c.execute_generated(&frame, &actions);
        c.flush();
        Ok(())
    }

    fn stats(&self) -> Result<DpStats, DpError> {
        Ok(self.core.lock().stats())
    }

    fn dump_flows(&self) -> Result<Vec<FlowInfo>, DpError> {
        let mut c = self.core.lock();
        c.tick();
        Ok(c.dump_flows())
    }
}
