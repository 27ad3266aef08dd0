//! `offload`: a guest's offloaded frame finished in software before a
//! plain tunnel (`datapath::offload`, the userspace provider towards a
//! peer that reads no offload metadata), and the same frame as a plain
//! tunnel frame.
//!
//! ```text
//!  [virtio-net header (10, host order, as AF_PACKET hands it over)] [frame]
//! ```
//!
//! What must hold:
//!
//! * `resolve`: an error leaves the output as it was; otherwise the frames
//!   lie end to end in the output, none is empty, a GSO frame's segments
//!   each carry at most `gso_size` payload bytes behind the input's
//!   headers, and no segment has a partial checksum left to complete.
//! * `inner_gso` / `complete_unfinished` (tunnel receive): no panic; a
//!   completed frame keeps its length and has nothing left to complete.

use midonet_datapath::offload::{complete_unfinished, inner_gso, resolve};
use midonet_datapath::sys::{VnetHdr, VNET_HDR_LEN};

pub fn offload(data: &[u8]) {
    let Some((head, frame)) = data.split_first_chunk::<VNET_HDR_LEN>() else { return };
    let vnet = VnetHdr::parse(head);
    let mut out = vec![0x5a; 3];
    let mut ends = vec![3];
    match resolve(frame, &vnet, &mut out, &mut ends) {
        Err(_) => assert_eq!((&out[..], &ends[..]), (&[0x5a; 3][..], &[3][..]), "nothing left"),
        Ok(()) => {
            assert!(ends.len() > 1, "at least one frame");
            assert_eq!(ends.last(), Some(&out.len()), "frames end to end");
            for w in ends.windows(2) {
                assert!(w[0] < w[1], "no empty frame: {ends:?}");
                let mut f = out[w[0]..w[1]].to_vec();
                let gso = vnet.gso_type & !VnetHdr::GSO_ECN != VnetHdr::GSO_NONE;
                if gso {
                    assert!(f.len() <= frame.len(), "a segment is no longer than its frame");
                }
                if gso || vnet.flags & VnetHdr::F_NEEDS_CSUM != 0 {
                    assert!(!complete_unfinished(&mut f), "a finished frame has nothing partial");
                }
            }
        }
    }
    let _ = inner_gso(frame, None);
    let _ = inner_gso(frame, Some(usize::from(vnet.gso_size)));
    let mut f = frame.to_vec();
    if complete_unfinished(&mut f) {
        assert_eq!(f.len(), frame.len());
        assert!(!complete_unfinished(&mut f), "completed once is complete");
    }
}
