//! Reading captures: classic pcap (microsecond or nanosecond, either byte
//! order) and pcapng, one frame at a time, as Ethernet frames: Linux cooked
//! captures (SLL and SLL2, what `tcpdump -i any` records) are converted.

use std::{borrow::Cow, fs::File, io::Read as _, path::Path, time::Duration};

use anyhow::{Context as _, anyhow, bail};
use pcap_file::{
    DataLink, TsResolution,
    pcap::PcapReader,
    pcapng::{
        Block, PcapNgReader,
        blocks::{
            enhanced_packet::EnhancedPacketOption,
            interface_description::InterfaceDescriptionOption,
        },
    },
};

/// Largest record a sane capture holds (libpcap's own limit, and then some).
const MAX_RECORD: u32 = 256 * 1024;

/// One frame read from a capture, borrowing the reader's buffer.
pub struct RawFrame<'a> {
    pub(crate) timestamp: Duration,
    pub(crate) len: u32,
    pub data: Cow<'a, [u8]>,
    /// The direction the capture recorded (a cooked header's packet type,
    /// pcapng's `epb_flags`), if it did.
    pub(crate) direction: Option<Direction>,
    /// A frame of the loopback interface (in a `tcpdump -i any` capture),
    /// which XDP on a network interface never sees.
    pub(crate) loopback: bool,
}

/// Which way a frame went, seen from the filtered host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Direction {
    /// Received: what XDP judges.
    In,
    /// Sent by the host: what the egress recorder sees.
    Out,
    /// Neither the capture nor the host's addresses say.
    Unknown,
}

/// Linux's PACKET_OUTGOING (a cooked header's packet type); 0 to 3 are
/// received frames (to this host, broadcast, multicast, to another host).
const PACKET_OUTGOING: u16 = 4;
/// ARPHRD_LOOPBACK.
const ARPHRD_LOOPBACK: u16 = 772;

/// The link layers a capture can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Ethernet,
    /// Linux cooked capture v1 (LINKTYPE_LINUX_SLL, 113): 16-byte header.
    Sll,
    /// Linux cooked capture v2 (LINKTYPE_LINUX_SLL2, 276): 20-byte header.
    Sll2,
}

const ETH_HEADER: usize = 14;
const SLL_HEADER: usize = 16;
const SLL2_HEADER: usize = 20;

impl Link {
    /// The frame as Ethernet: a cooked header becomes an Ethernet header
    /// with the sender's link address as source (when it has six bytes),
    /// a zero destination and the cooked header's protocol as EtherType.
    /// Returns the frame and its length on the wire.
    fn to_ethernet<'a>(self, data: Cow<'a, [u8]>, len: u32) -> (Cow<'a, [u8]>, u32) {
        // Offsets of the EtherType, the address length byte and the address.
        let (header, protocol, addr_len, addr) = match self {
            Link::Ethernet => return (data, len),
            Link::Sll => (SLL_HEADER, 14, 5, 6),
            Link::Sll2 => (SLL2_HEADER, 0, 11, 12),
        };
        if data.len() < header {
            // Shorter than its own header: nothing to run (reported as
            // malformed, like any frame too short for Ethernet).
            return (
                Cow::Owned(data[..data.len().min(ETH_HEADER - 1)].to_vec()),
                len,
            );
        }
        let mut eth = Vec::with_capacity(data.len() - header + ETH_HEADER);
        eth.extend_from_slice(&[0; 6]);
        if data[addr_len] == 6 {
            eth.extend_from_slice(&data[addr..addr + 6]);
        } else {
            eth.extend_from_slice(&[0; 6]);
        }
        eth.extend_from_slice(&data[protocol..protocol + 2]);
        eth.extend_from_slice(&data[header..]);
        let wire = (len as usize).saturating_sub(header) + ETH_HEADER;
        (Cow::Owned(eth), wire as u32)
    }

    /// What a cooked header says of the frame: its direction, and whether
    /// it is the loopback interface's. Nothing for Ethernet frames.
    fn cooked_facts(self, data: &[u8]) -> (Option<Direction>, bool) {
        let be16 = |at: usize| {
            data.get(at..at + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
        };
        let (packet_type, hatype) = match self {
            Link::Ethernet => return (None, false),
            Link::Sll => (be16(0), be16(2)),
            Link::Sll2 => (data.get(10).map(|t| u16::from(*t)), be16(8)),
        };
        let direction = packet_type.map(|t| {
            if t == PACKET_OUTGOING {
                Direction::Out
            } else {
                Direction::In
            }
        });
        (direction, hatype == Some(ARPHRD_LOOPBACK))
    }
}

/// Per pcapng interface: link type and timestamp units.
pub struct Interface {
    linktype: DataLink,
    /// Timestamp units per second (if_tsresol; 10^6 by default).
    units: u64,
    /// Seconds added to every timestamp (if_tsoffset).
    offset: u64,
}

pub enum Capture {
    Pcap {
        reader: PcapReader<File>,
        nanos: bool,
        link: Link,
    },
    PcapNg {
        reader: PcapNgReader<File>,
        interfaces: Vec<Interface>,
    },
}

impl Capture {
    pub fn open(path: &Path) -> anyhow::Result<Capture> {
        let name = path.display();
        let mut magic = [0u8; 4];
        let mut file = File::open(path).with_context(|| format!("cannot open capture {name}"))?;
        let n = file
            .read(&mut magic)
            .with_context(|| format!("cannot read capture {name}"))?;
        if n == 0 {
            bail!("{name}: empty file, not a pcap or pcapng capture");
        }
        let file = File::open(path).with_context(|| format!("cannot open capture {name}"))?;
        match magic {
            [0xa1, 0xb2, 0xc3, 0xd4]
            | [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d]
            | [0x4d, 0x3c, 0xb2, 0xa1] => {
                let reader = PcapReader::new(file)
                    .map_err(|e| anyhow!("{name}: not a valid pcap file: {}", describe(e)))?;
                let header = reader.header();
                let link = check_link(header.datalink).map_err(|e| anyhow!("{name}: {e}"))?;
                Ok(Capture::Pcap {
                    nanos: header.ts_resolution == TsResolution::NanoSecond,
                    link,
                    reader,
                })
            }
            [0x0a, 0x0d, 0x0d, 0x0a] => {
                let reader = PcapNgReader::new(file)
                    .map_err(|e| anyhow!("{name}: not a valid pcapng file: {}", describe(e)))?;
                Ok(Capture::PcapNg {
                    reader,
                    interfaces: Vec::new(),
                })
            }
            [0x1f, 0x8b, ..] => bail!("{name}: gzip-compressed; decompress it first (gunzip)"),
            _ => bail!(
                "{name}: not a pcap or pcapng capture (it starts with {:02x}{:02x}{:02x}{:02x}; \
                 a pcap starts with a1b2c3d4 or d4c3b2a1, a pcapng with 0a0d0d0a)",
                magic[0],
                magic[1],
                magic[2],
                magic[3]
            ),
        }
    }

    pub(crate) fn format(&self) -> &'static str {
        match self {
            Capture::Pcap { .. } => "pcap",
            Capture::PcapNg { .. } => "pcapng",
        }
    }

    /// Whether the capture can mark each frame's direction: cooked headers
    /// always do, pcapng may (`epb_flags`).
    pub(crate) fn marks_direction(&self) -> bool {
        match self {
            Capture::Pcap { link, .. } => *link != Link::Ethernet,
            Capture::PcapNg { .. } => true,
        }
    }

    /// The next frame, or None at the end.
    pub fn next_frame(&mut self) -> anyhow::Result<Option<RawFrame<'_>>> {
        match self {
            Capture::Pcap {
                reader,
                nanos,
                link,
            } => next_pcap(reader, *nanos, *link),
            Capture::PcapNg { reader, interfaces } => next_pcapng(reader, interfaces),
        }
    }
}

fn next_pcap(
    reader: &mut PcapReader<File>,
    nanos: bool,
    link: Link,
) -> anyhow::Result<Option<RawFrame<'_>>> {
    // Raw records: the validated ones refuse a frame longer on
    // the wire than the snap length, which is what a capture
    // with a short snap length is made of.
    let Some(raw) = reader.next_raw_packet() else {
        return Ok(None);
    };
    let raw = raw.map_err(|e| anyhow!("corrupt record: {}", describe(e)))?;
    let ns = if nanos {
        u64::from(raw.ts_frac)
    } else {
        u64::from(raw.ts_frac) * 1000
    };
    if ns >= 1_000_000_000 {
        bail!("corrupt record: fraction of a second out of range");
    }
    if raw.incl_len > MAX_RECORD {
        bail!("corrupt record: captured length {} bytes", raw.incl_len);
    }
    let (direction, loopback) = link.cooked_facts(&raw.data);
    let (data, len) = link.to_ethernet(raw.data, raw.orig_len);
    Ok(Some(RawFrame {
        timestamp: Duration::new(u64::from(raw.ts_sec), ns as u32),
        len,
        data,
        direction,
        loopback,
    }))
}

fn next_pcapng(
    reader: &mut PcapNgReader<File>,
    interfaces: &mut Vec<Interface>,
) -> anyhow::Result<Option<RawFrame<'static>>> {
    loop {
        let Some(block) = reader.next_block() else {
            return Ok(None);
        };
        let block = block.map_err(|e| anyhow!("corrupt block: {}", describe(e)))?;
        let (iface, units, len, data, flags) = match block {
            Block::SectionHeader(_) => {
                interfaces.clear();
                continue;
            }
            Block::InterfaceDescription(idb) => {
                let mut units = 1_000_000;
                let mut offset = 0;
                for o in &idb.options {
                    match o {
                        InterfaceDescriptionOption::IfTsResol(r) => {
                            units = ts_units(*r)?;
                        }
                        InterfaceDescriptionOption::IfTsOffset(s) => offset = *s,
                        _ => {}
                    }
                }
                interfaces.push(Interface {
                    linktype: idb.linktype,
                    units,
                    offset,
                });
                continue;
            }
            // pcap-file 2.0 turns the raw units into nanoseconds
            // as if they were: take them back.
            Block::EnhancedPacket(p) => {
                let flags = p.options.iter().find_map(|o| match o {
                    EnhancedPacketOption::Flags(f) => Some(*f),
                    _ => None,
                });
                (
                    p.interface_id,
                    Some(p.timestamp.as_nanos() as u64),
                    p.original_len,
                    p.data,
                    flags,
                )
            }
            Block::Packet(p) => (
                u32::from(p.interface_id),
                Some(p.timestamp),
                p.original_len,
                p.data,
                None,
            ),
            Block::SimplePacket(p) => (0, None, p.original_len, p.data, None),
            _ => continue,
        };
        let iface_info = interfaces.get(iface as usize).ok_or_else(|| {
            anyhow!("packet of interface {iface}, which no interface block described")
        })?;
        let link =
            check_link(iface_info.linktype).map_err(|e| anyhow!("interface {iface}: {e}"))?;
        let timestamp = match units {
            None => Duration::ZERO,
            Some(u) => pcapng_time(u, iface_info).ok_or_else(|| {
                anyhow!(
                    "corrupt block: interface {iface}'s time offset (if_tsoffset) of {} s \
                     puts the packet's time past the largest timestamp",
                    iface_info.offset
                )
            })?,
        };
        if data.len() > MAX_RECORD as usize {
            bail!("corrupt block: captured length {} bytes", data.len());
        }
        let (cooked, loopback) = link.cooked_facts(&data);
        // epb_flags bits 0-1: 1 inbound, 2 outbound (0: not recorded).
        let direction = match flags.map(|f| f & 3) {
            Some(1) => Some(Direction::In),
            Some(2) => Some(Direction::Out),
            _ => cooked,
        };
        // Owned: a borrow of the reader returned from inside the
        // loop is more than today's borrow checker accepts.
        let (data, len) = link.to_ethernet(Cow::Owned(data.into_owned()), len);
        return Ok(Some(RawFrame {
            timestamp,
            len,
            data,
            direction,
            loopback,
        }));
    }
}

/// A pcapng timestamp, in its interface's units, as time since the epoch;
/// None when the interface's offset carries it past what u64 seconds hold.
fn pcapng_time(units: u64, iface: &Interface) -> Option<Duration> {
    let secs = (units / iface.units).checked_add(iface.offset)?;
    let frac = units % iface.units;
    let ns = (u128::from(frac) * 1_000_000_000 / u128::from(iface.units)) as u32;
    Some(Duration::new(secs, ns))
}

/// Units per second of a pcapng if_tsresol option.
fn ts_units(resol: u8) -> anyhow::Result<u64> {
    let exp = u32::from(resol & 0x7f);
    let units = if resol & 0x80 == 0 {
        10u64.checked_pow(exp)
    } else {
        2u64.checked_pow(exp)
    };
    units
        .filter(|u| *u > 0)
        .ok_or_else(|| anyhow!("interface timestamp resolution {resol:#04x} out of range"))
}

fn check_link(link: DataLink) -> anyhow::Result<Link> {
    let number = u32::from(link);
    match number {
        1 => Ok(Link::Ethernet),
        113 => Ok(Link::Sll),
        276 => Ok(Link::Sll2),
        _ => bail!(
            "link type {number} ({link:?}) is not supported: replay runs Ethernet frames \
             (link type 1, DLT_EN10MB) and Linux cooked captures (113 and 276, `tcpdump -i \
             any`) through the XDP program"
        ),
    }
}

fn describe(e: pcap_file::PcapError) -> String {
    match e {
        pcap_file::PcapError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the file ends too early (cut short?)".to_string()
        }
        e => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// UDP in IPv4, as the cooked headers carry it.
    const IP: &[u8] = &[
        0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8,
    ];
    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn expected() -> Vec<u8> {
        [&[0u8; 6][..], &MAC, &[0x08, 0x00], IP].concat()
    }

    #[test]
    fn cooked_headers_tell_direction_and_loopback() {
        let sll = |ptype: u8, hatype: u16| {
            let h = hatype.to_be_bytes();
            [
                &[0, ptype, h[0], h[1], 0, 6][..],
                &MAC,
                &[0, 0],
                &[0x08, 0x00],
                IP,
            ]
            .concat()
        };
        assert_eq!(
            Link::Sll.cooked_facts(&sll(4, 1)),
            (Some(Direction::Out), false)
        );
        assert_eq!(
            Link::Sll.cooked_facts(&sll(0, 1)),
            (Some(Direction::In), false)
        );
        assert_eq!(
            Link::Sll.cooked_facts(&sll(0, 772)),
            (Some(Direction::In), true)
        );
        let mut sll2 = vec![0u8; 20];
        sll2[8..10].copy_from_slice(&1u16.to_be_bytes());
        sll2[10] = 4;
        assert_eq!(
            Link::Sll2.cooked_facts(&sll2),
            (Some(Direction::Out), false)
        );
        sll2[10] = 3;
        assert_eq!(Link::Sll2.cooked_facts(&sll2), (Some(Direction::In), false));
        assert_eq!(Link::Ethernet.cooked_facts(&sll2), (None, false));
    }

    #[test]
    fn sll_becomes_ethernet() {
        // packet type 0 (to us), ARPHRD_ETHER, 6-byte address, padding, IPv4.
        let sll = [&[0, 0, 0, 1, 0, 6][..], &MAC, &[0, 0], &[0x08, 0x00], IP].concat();
        let (eth, len) = Link::Sll.to_ethernet(Cow::Borrowed(&sll), sll.len() as u32 + 4);
        assert_eq!(&*eth, &expected()[..]);
        assert_eq!(len as usize, expected().len() + 4);
    }

    #[test]
    fn sll2_becomes_ethernet() {
        // protocol IPv4, reserved, ifindex 3, ARPHRD_ETHER, to us, 6 bytes.
        let sll2 = [
            &[0x08, 0x00, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6][..],
            &MAC,
            &[0, 0],
            IP,
        ]
        .concat();
        let (eth, _) = Link::Sll2.to_ethernet(Cow::Borrowed(&sll2), sll2.len() as u32);
        assert_eq!(&*eth, &expected()[..]);
    }

    #[test]
    fn short_cooked_frames_stay_too_short_to_run() {
        let (eth, _) = Link::Sll2.to_ethernet(Cow::Borrowed(&[1u8; 19][..]), 19);
        assert!(eth.len() < ETH_HEADER);
    }

    /// Found by the `capture` fuzz target: an if_tsoffset near u64::MAX
    /// overflowed the seconds (a panic in debug builds, a wrong time in
    /// release ones).
    #[test]
    fn a_time_offset_past_the_largest_timestamp_is_an_error() {
        use pcap_file::pcapng::{
            PcapNgWriter,
            blocks::{
                enhanced_packet::EnhancedPacketBlock,
                interface_description::InterfaceDescriptionBlock,
            },
        };
        let mut idb = InterfaceDescriptionBlock::new(DataLink::ETHERNET, 65535);
        idb.options = vec![InterfaceDescriptionOption::IfTsOffset(u64::MAX)];
        let mut w = PcapNgWriter::new(Vec::new()).unwrap();
        w.write_pcapng_block(idb).unwrap();
        let frame = expected();
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_secs(1_795_000_000),
            original_len: frame.len() as u32,
            data: Cow::Borrowed(&frame),
            options: vec![],
        })
        .unwrap();
        let path = std::env::temp_dir().join(format!("flt-tsoffset-{}.pcapng", std::process::id()));
        std::fs::write(&path, w.into_inner()).unwrap();
        let mut capture = Capture::open(&path).unwrap();
        // Read from the open file: none is left behind, even on a panic.
        std::fs::remove_file(&path).unwrap();
        let e = capture.next_frame().err().expect("refused").to_string();
        assert!(
            e.contains("interface 0's time offset (if_tsoffset) of 18446744073709551615 s"),
            "{e}"
        );
    }

    #[test]
    fn other_links_are_refused_by_name() {
        let e = check_link(DataLink::from(101)).unwrap_err().to_string();
        assert!(
            e.contains("link type 101") && e.contains("113 and 276"),
            "{e}"
        );
    }
}
