/**
 * rtnetlink from the helper, through libc calls made with koffi: create the
 * bridge and the veth pairs, set addresses, routes, MTU and link state. A
 * netlink socket works on the network namespace it was created in, so the
 * container side is configured through a socket opened while the calling
 * thread was inside the container's namespace (see netns.ts).
 *
 * Every call is synchronous: the kernel handles a rtnetlink request inside
 * sendto() and queues the acknowledgement before sendto returns, so recv()
 * never waits (rtnetlink(7), netlink(7)). One request costs a few µs, where
 * an `ip` process costs milliseconds.
 */
import { CapsaError } from '../../errors';
import { errnoName, libc, sysErrno } from './sys';

const AF_NETLINK = 16;
const AF_INET = 2;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_ROUTE = 0;

const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;

const RTM_NEWLINK = 16;
const RTM_DELLINK = 17;
const RTM_GETLINK = 18;
const RTM_SETLINK = 19;
const RTM_NEWADDR = 20;
const RTM_NEWROUTE = 24;

const IFLA_IFNAME = 3;
const IFLA_MTU = 4;
const IFLA_MASTER = 10;
const IFLA_LINKINFO = 18;
const IFLA_NET_NS_FD = 28;
const IFLA_PROTINFO = 12;
const IFLA_BRPORT_MODE = 4;
const NLA_F_NESTED = 0x8000;
const AF_BRIDGE = 7;
const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const VETH_INFO_PEER = 1;
const IFLA_ADDRESS = 1;

const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFA_BROADCAST = 4;

const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RT_TABLE_MAIN = 254;
const RTPROT_BOOT = 3;
const RT_SCOPE_UNIVERSE = 0;
const RTN_UNICAST = 1;

export const IFF_UP = 0x1;

export class NetlinkError extends CapsaError {
  constructor(
    readonly operation: string,
    readonly errno: number,
  ) {
    super('E_NETLINK', `${operation} failed: ${errnoName(errno) ?? `errno ${errno}`}`, { fields: { step: operation, errno } });
  }
}

function attr(type: number, payload: Buffer): Buffer {
  const len = 4 + payload.length;
  const buf = Buffer.alloc((len + 3) & ~3);
  buf.writeUInt16LE(len, 0);
  buf.writeUInt16LE(type, 2);
  payload.copy(buf, 4);
  return buf;
}
const strAttr = (type: number, s: string): Buffer => attr(type, Buffer.from(s + '\0'));
const u32Attr = (type: number, n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return attr(type, b);
};
const ipAttr = (type: number, addr: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(addr >>> 0);
  return attr(type, b);
};

function ifinfomsg(index = 0, flags = 0, change = 0, family = 0 /* AF_UNSPEC */): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt8(family, 0);
  b.writeInt32LE(index, 4);
  b.writeUInt32LE(flags, 8);
  b.writeUInt32LE(change, 12);
  return b;
}

export interface LinkInfo {
  index: number;
  name: string;
  flags: number;
  mtu?: number;
  master?: number;
  kind?: string;
  mac?: string;
}

function parseAttrs(buf: Buffer, start: number, end: number): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let off = start;
  while (off + 4 <= end) {
    const len = buf.readUInt16LE(off);
    if (len < 4) break;
    out.set(buf.readUInt16LE(off + 2) & 0x3fff, buf.subarray(off + 4, off + len));
    off += (len + 3) & ~3;
  }
  return out;
}

function parseLink(msg: Buffer): LinkInfo {
  const attrs = parseAttrs(msg, 16 + 16, msg.length);
  const name = attrs.get(IFLA_IFNAME);
  const linkinfo = attrs.get(IFLA_LINKINFO);
  const kind = linkinfo ? parseAttrs(linkinfo, 0, linkinfo.length).get(IFLA_INFO_KIND) : undefined;
  const mac = attrs.get(IFLA_ADDRESS);
  return {
    index: msg.readInt32LE(16 + 4),
    flags: msg.readUInt32LE(16 + 8),
    name: name ? name.toString('utf8').replace(/\0.*$/s, '') : '',
    mtu: attrs.get(IFLA_MTU)?.readUInt32LE(0),
    master: attrs.get(IFLA_MASTER)?.readUInt32LE(0),
    kind: kind?.toString('utf8').replace(/\0.*$/s, ''),
    mac: mac && mac.length === 6 ? [...mac].map((x) => x.toString(16).padStart(2, '0')).join(':') : undefined,
  };
}

/** A NETLINK_ROUTE socket in the network namespace of the thread that opened it. */
export class Netlink {
  private seq = 1;
  private readonly rbuf = Buffer.alloc(64 * 1024);
  private static readonly kernel = (() => {
    const b = Buffer.alloc(12);
    b.writeUInt16LE(AF_NETLINK, 0);
    return b;
  })();

  private constructor(private fd: number) {}

  static open(): Netlink {
    const fd = libc().socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) throw new NetlinkError('socket(AF_NETLINK)', sysErrno());
    return new Netlink(fd);
  }

  close(): void {
    if (this.fd >= 0) libc().close(this.fd);
    this.fd = -1;
  }

  /** Sends one request; returns the reply messages (for a get) or throws the kernel's error. */
  private request(type: number, flags: number, body: Buffer[], operation: string): Buffer[] {
    const payload = Buffer.concat(body);
    const hdr = Buffer.alloc(16);
    const seq = this.seq++;
    hdr.writeUInt32LE(16 + payload.length, 0);
    hdr.writeUInt16LE(type, 4);
    hdr.writeUInt16LE(NLM_F_REQUEST | flags, 6);
    hdr.writeUInt32LE(seq, 8);
    const msg = Buffer.concat([hdr, payload]);
    const c = libc();
    if (c.sendto(this.fd, msg, msg.length, 0, Netlink.kernel, 12) < 0) throw new NetlinkError(operation, sysErrno());
    const replies: Buffer[] = [];
    for (;;) {
      const n = c.recv(this.fd, this.rbuf, this.rbuf.length, 0);
      if (n < 0) throw new NetlinkError(operation, sysErrno());
      let off = 0;
      while (off + 16 <= n) {
        const len = this.rbuf.readUInt32LE(off);
        const mtype = this.rbuf.readUInt16LE(off + 4);
        const mseq = this.rbuf.readUInt32LE(off + 8);
        if (len < 16 || off + len > n) break;
        if (mseq === seq) {
          if (mtype === NLMSG_ERROR) {
            const err = -this.rbuf.readInt32LE(off + 16);
            if (err !== 0) throw new NetlinkError(operation, err);
            return replies;
          }
          if (mtype === NLMSG_DONE) return replies;
          replies.push(Buffer.from(this.rbuf.subarray(off, off + len)));
          if (!(flags & NLM_F_ACK)) return replies;
        }
        off += (len + 3) & ~3;
      }
    }
  }

  /** The link called `name`, or undefined. */
  link(name: string): LinkInfo | undefined {
    try {
      const [reply] = this.request(RTM_GETLINK, 0, [ifinfomsg(), strAttr(IFLA_IFNAME, name)], `get link ${name}`);
      return reply ? parseLink(reply) : undefined;
    } catch (err) {
      if (err instanceof NetlinkError && err.errno === 19 /* ENODEV */) return undefined;
      throw err;
    }
  }

  createBridge(name: string): void {
    this.request(
      RTM_NEWLINK,
      NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
      [ifinfomsg(0, IFF_UP, IFF_UP), strAttr(IFLA_IFNAME, name), attr(IFLA_LINKINFO, strAttr(IFLA_INFO_KIND, 'bridge'))],
      `create bridge ${name}`,
    );
  }

  /**
   * A veth pair: `hostName` on this namespace, up and enslaved to
   * `masterIndex`, and `peerName` created (down) directly in the namespace `peerNsFd`.
   */
  createVeth(o: { hostName: string; peerName: string; peerMac?: string; peerNsFd: number; mtu: number; masterIndex: number }): void {
    // the peer cannot be created up: veth_open fails with ENOTCONN until both ends are linked
    const peer = Buffer.concat([ifinfomsg(), strAttr(IFLA_IFNAME, o.peerName), u32Attr(IFLA_MTU, o.mtu), u32Attr(IFLA_NET_NS_FD, o.peerNsFd), ...(o.peerMac ? [attr(IFLA_ADDRESS, Buffer.from(o.peerMac.split(':').map((x) => parseInt(x, 16))))] : [])]);
    this.request(
      RTM_NEWLINK,
      NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
      [
        ifinfomsg(0, IFF_UP, IFF_UP),
        strAttr(IFLA_IFNAME, o.hostName),
        u32Attr(IFLA_MTU, o.mtu),
        u32Attr(IFLA_MASTER, o.masterIndex),
        attr(IFLA_LINKINFO, Buffer.concat([strAttr(IFLA_INFO_KIND, 'veth'), attr(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer))])),
      ],
      `create veth ${o.hostName}`,
    );
  }

  /**
   * Hairpin mode on a bridge port (`bridge link set dev X hairpin on`): the
   * bridge may send a frame back out of the port it came in on. A container
   * calling its own published port through a host address needs it where
   * br_netfilter NATs at the bridge: the DNATed frame goes back to its sender.
   */
  setHairpin(index: number): void {
    this.request(
      RTM_SETLINK,
      NLM_F_ACK,
      [ifinfomsg(index, 0, 0, AF_BRIDGE), attr(IFLA_PROTINFO | NLA_F_NESTED, attr(IFLA_BRPORT_MODE, Buffer.from([1])))],
      `set hairpin on bridge port ${index}`,
    );
  }

  setUp(index: number): void {
    this.request(RTM_NEWLINK, NLM_F_ACK, [ifinfomsg(index, IFF_UP, IFF_UP)], `set link ${index} up`);
  }

  /** Deletes a link by name; false when there was none. */
  deleteLink(name: string): boolean {
    try {
      this.request(RTM_DELLINK, NLM_F_ACK, [ifinfomsg(), strAttr(IFLA_IFNAME, name)], `delete link ${name}`);
      return true;
    } catch (err) {
      if (err instanceof NetlinkError && err.errno === 19 /* ENODEV */) return false;
      throw err;
    }
  }

  /** Adds addr/prefix on a link; `exist: true` tolerates an address already there. */
  addAddress(index: number, addr: number, prefix: number, broadcast: number, opts: { exist?: boolean } = {}): void {
    const msg = Buffer.alloc(8);
    msg.writeUInt8(AF_INET, 0);
    msg.writeUInt8(prefix, 1);
    msg.writeUInt32LE(index, 4);
    try {
      this.request(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, [msg, ipAttr(IFA_LOCAL, addr), ipAttr(IFA_ADDRESS, addr), ipAttr(IFA_BROADCAST, broadcast)], `add address on link ${index}`);
    } catch (err) {
      if (opts.exist && err instanceof NetlinkError && err.errno === 17 /* EEXIST */) return;
      throw err;
    }
  }

  addDefaultRoute(gateway: number, oif: number): void {
    const msg = Buffer.alloc(12);
    msg.writeUInt8(AF_INET, 0);
    msg.writeUInt8(RT_TABLE_MAIN, 4);
    msg.writeUInt8(RTPROT_BOOT, 5);
    msg.writeUInt8(RT_SCOPE_UNIVERSE, 6);
    msg.writeUInt8(RTN_UNICAST, 7);
    this.request(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, [msg, ipAttr(RTA_GATEWAY, gateway), u32Attr(RTA_OIF, oif)], 'add default route');
  }
}
