// recvmsg(2) with SCM_RIGHTS: the one thing System.Net.Sockets cannot do (Socket has no
// ancillary-data API), so the control connection's reads go through libc.
//
// The structures follow Linux's <sys/socket.h>: size_t fields are nuint, so the same code
// fits LP64 (x86-64, arm64) and ILP32 layouts; CMSG_ALIGN is to sizeof(size_t).
using System;
using System.ComponentModel;
using System.Runtime.InteropServices;

namespace Nettcpd.Share
{
    static unsafe class Native
    {
        const int SOL_SOCKET = 1;
        const int SCM_RIGHTS = 1;
        const int MSG_CTRUNC = 0x08;
        const int MSG_TRUNC = 0x20;
        const int MSG_CMSG_CLOEXEC = 0x40000000;
        const int EINTR = 4;
        const int EAGAIN = 11;

        [StructLayout(LayoutKind.Sequential)]
        struct IoVec
        {
            public void* Base;
            public nuint Len;
        }

        [StructLayout(LayoutKind.Sequential)]
        struct MsgHdr
        {
            public void* Name;
            public uint NameLen;
            public IoVec* Iov;
            public nuint IovLen;
            public void* Control;
            public nuint ControlLen;
            public int Flags;
        }

        [StructLayout(LayoutKind.Sequential)]
        struct CmsgHdr
        {
            public nuint Len;
            public int Level;
            public int Type;
        }

        [DllImport("libc", EntryPoint = "recvmsg", SetLastError = true)]
        static extern nint SysRecvmsg(int fd, MsgHdr* msg, int flags);

        [DllImport("libc", EntryPoint = "close", SetLastError = true)]
        static extern int SysClose(int fd);

        // fcntl is variadic; with an int third argument the fixed-argument call is the same
        // on Linux's x86-64 and arm64 ABIs.
        [DllImport("libc", EntryPoint = "fcntl", SetLastError = true)]
        static extern int SysFcntl(int fd, int cmd, int arg);

        const int F_GETFL = 3;
        const int F_SETFL = 4;
        const int O_NONBLOCK = 0x800;   // 04000, as on every Linux architecture .NET runs on

        static nuint Align(nuint n) => (n + (nuint) sizeof(nuint) - 1) & ~((nuint) sizeof(nuint) - 1);

        // Room for this many descriptors in one message: the daemon sends one, and a
        // message with more is refused, but every descriptor that came must be closed.
        const int MaxFds = 8;

        public enum Result { Message, WouldBlock, Eof }

        // One recvmsg on fd into buf. On Message: len is the message's length and fd the
        // descriptor that came with it, or -1 (extra descriptors are closed here). A message
        // longer than buf, or descriptors cut short, throws: the record boundary is lost.
        public static Result Receive(IntPtr socket, byte[] buf, out int len, out int fd)
        {
            len = 0;
            fd = -1;
            nuint space = Align((nuint) sizeof(CmsgHdr)) + Align((nuint) (MaxFds * sizeof(int)));
            byte* control = stackalloc byte[(int) space];
            new Span<byte>(control, (int) space).Clear();
            fixed (byte* p = buf) {
                IoVec iov = new IoVec { Base = p, Len = (nuint) buf.Length };
                MsgHdr msg = new MsgHdr { Iov = &iov, IovLen = 1, Control = control, ControlLen = space };
                nint n;
                do {
                    n = SysRecvmsg((int) socket, &msg, MSG_CMSG_CLOEXEC);
                } while (n < 0 && Marshal.GetLastPInvokeError() == EINTR);
                if (n < 0) {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == EAGAIN)
                        return Result.WouldBlock;
                    throw new Win32Exception(errno, "recvmsg on the control socket: " + new Win32Exception(errno).Message);
                }
                // Collect every descriptor first, so none leaks whatever is wrong below.
                int count = 0;
                if (msg.ControlLen >= (nuint) sizeof(CmsgHdr)) {
                    for (byte* c = control; c + sizeof(CmsgHdr) <= control + msg.ControlLen;) {
                        CmsgHdr* h = (CmsgHdr*) c;
                        if (h->Len < (nuint) sizeof(CmsgHdr) || c + h->Len > control + msg.ControlLen)
                            break;
                        if (h->Level == SOL_SOCKET && h->Type == SCM_RIGHTS) {
                            nuint dataLen = h->Len - Align((nuint) sizeof(CmsgHdr));
                            int* fds = (int*) (c + Align((nuint) sizeof(CmsgHdr)));
                            for (nuint i = 0; i < dataLen / sizeof(int); i++) {
                                if (count++ == 0)
                                    fd = fds[i];
                                else
                                    SysClose(fds[i]);
                            }
                        }
                        c += Align(h->Len);
                    }
                }
                if ((msg.Flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 || count > 1) {
                    Close(fd);
                    fd = -1;
                    throw new InvalidOperationException((msg.Flags & MSG_TRUNC) != 0
                        ? "control message longer than " + buf.Length + " bytes"
                        : "control message with more than one descriptor");
                }
                if (n == 0 && fd < 0)
                    return Result.Eof;
                len = (int) n;
                return Result.Message;
            }
        }

        // Clears O_NONBLOCK on fd. Socket.Blocking alone cannot: on Unix it changes how .NET
        // calls the descriptor, never the flag, so a blocking Receive on a descriptor nettcpd
        // left non-blocking fails at once with EAGAIN (SocketError.TimedOut); and without it a
        // Socket made on such a descriptor refuses blocking calls ("an earlier asynchronous
        // call is in progress"). Both were seen; the caller does this, then Blocking = true.
        public static void SetBlocking(IntPtr socket)
        {
            int flags = SysFcntl((int) socket, F_GETFL, 0);
            if (flags < 0 || ((flags & O_NONBLOCK) != 0 && SysFcntl((int) socket, F_SETFL, flags & ~O_NONBLOCK) < 0)) {
                int errno = Marshal.GetLastPInvokeError();
                throw new Win32Exception(errno, "fcntl on a handed-off socket: " + new Win32Exception(errno).Message);
            }
        }

        public static void Close(int fd)
        {
            if (fd >= 0)
                SysClose(fd);
        }
    }
}
