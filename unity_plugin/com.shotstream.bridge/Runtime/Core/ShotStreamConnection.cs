// A Direct session over the WebSocket engine gateway (ws://HOST:PORT/v1/direct), no UnityEngine.
// Not thread-safe for concurrent receives: one reader task; sends are serialized internally.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Net;
using System.Net.WebSockets;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace ShotStream.Core
{
    /// <summary>A session-level failure: a fatal server error (Code/Message from the server), a refused
    /// handshake (HttpStatus), a timeout, a protocol violation, or the connection ending unexpectedly.</summary>
    public sealed class ShotStreamException : Exception
    {
        /// <summary>grpc.StatusCode value from the server's Error (0 when the failure is local).</summary>
        public readonly uint Code;
        public readonly string ServerMessage;
        /// <summary>HTTP status the server answered the WebSocket handshake with (401: missing or wrong token,
        /// 403, 404: wrong path); 0 when there was no such answer.</summary>
        public readonly int HttpStatus;
        /// <summary>True when another attempt may succeed (the server could not be reached, the connection was
        /// lost, no answer in time, a server restart); false when it would fail the same way (a refused
        /// handshake, a server error, a malformed or oversized message). <see cref="ReconnectPolicy"/> retries only these.</summary>
        public readonly bool Transient;

        public ShotStreamException(uint code, string message, Exception inner = null, bool transient = false, int httpStatus = 0)
            : base(code != 0 ? "shotstream error " + code + ": " + message : message, inner)
        {
            Code = code; ServerMessage = message; Transient = transient; HttpStatus = httpStatus;
        }
    }

    public sealed class ShotStreamConnection : IDisposable
    {
        public const int DefaultReceiveBufferBytes = 1 << 16;
        /// <summary>Connect + open must be done within this unless the caller says otherwise.</summary>
        public static readonly TimeSpan DefaultOpenTimeout = TimeSpan.FromSeconds(10);
        // Every server message but a chunk is a small JSON object: this bounds what a peer can make the client
        // buffer before the session has said how large its chunks are.
        const int MaxJsonMessageBytes = 1 << 20;
        // Room for a chunk's SSC1 header and JSON (under 1 KB from the gateway).
        const int ChunkHeaderAllowance = 1 << 16;
        // The receive buffer never grows past this, whatever a session announces.
        const int MaxMessageCeiling = 1 << 30;
        /// <summary>Once a connection has asked for a snapshot, a message may also be this large: a snapshot part of up to 2 MiB
        /// (the server sends 1 MiB parts by default), as base64 JSON.</summary>
        public const int MaxSnapshotPartMessageBytes = (2 << 20) / 3 * 4 + 4 + (1 << 16);

        readonly ClientWebSocket ws;
        readonly SemaphoreSlim sendLock = new SemaphoreSlim(1, 1);
        byte[] buffer = new byte[DefaultReceiveBufferBytes];
        int maxMessageBytes = MaxJsonMessageBytes;
        bool closedByServer;
        volatile bool snapshotAsked;

        public SessionOpened Session { get; private set; }
        public WebSocketState State { get { return ws.State; } }

        ShotStreamConnection(ClientWebSocket ws) { this.ws = ws; }

        /// <summary>Opens the WebSocket (Authorization: Bearer token when a token is given). A server that cannot be
        /// reached throws a Transient ShotStreamException; a refused handshake (401 wrong token, 403, 404 wrong path)
        /// throws one that is not Transient and carries the HttpStatus.</summary>
        public static async Task<ShotStreamConnection> ConnectAsync(Uri uri, string token = null, CancellationToken ct = default(CancellationToken))
        {
            if (uri == null) throw new ArgumentNullException(nameof(uri));
            var ws = new ClientWebSocket();
            if (!string.IsNullOrEmpty(token)) ws.Options.SetRequestHeader("Authorization", "Bearer " + token);
            try { await ws.ConnectAsync(uri, ct).ConfigureAwait(false); }
            catch (WebSocketException e)
            {
                ws.Dispose();
                // No socket-level cause: the server answered the handshake, just not with 101 Switching Protocols.
                if (e.GetBaseException() is WebSocketException) throw await ExplainRefusedHandshakeAsync(uri, token, e, ct).ConfigureAwait(false);
                throw new ShotStreamException(0, "could not connect to " + uri + " (server down, wrong host or port?): " + e.GetBaseException().Message, e, transient: true);
            }
            catch { ws.Dispose(); throw; }
            return new ShotStreamConnection(ws);
        }

        // mono's ClientWebSocket (the one Unity ships) reports any answer but 101 as "Unable to connect to the remote
        // server", without the status. One plain GET with the same Authorization asks the server why: the gateway
        // answers 401 / 403 / 404 with a plain-text reason before it looks for the WebSocket upgrade.
        static async Task<ShotStreamException> ExplainRefusedHandshakeAsync(Uri uri, string token, WebSocketException e, CancellationToken ct)
        {
            int status = 0;
            string body = "";
            var request = (HttpWebRequest)WebRequest.Create(new UriBuilder(uri) { Scheme = uri.Scheme == "wss" ? "https" : "http" }.Uri);
            if (!string.IsNullOrEmpty(token)) request.Headers[HttpRequestHeader.Authorization] = "Bearer " + token;
            using (ct.Register(request.Abort))
            {
                try { using (var ok = (HttpWebResponse)await request.GetResponseAsync().ConfigureAwait(false)) status = (int)ok.StatusCode; }
                catch (WebException w) when (w.Response is HttpWebResponse)
                {
                    using (var refused = (HttpWebResponse)w.Response)
                    using (var reader = new StreamReader(refused.GetResponseStream(), Encoding.UTF8))
                    {
                        status = (int)refused.StatusCode;
                        body = (reader.ReadLine() ?? "").Trim();
                    }
                }
                catch (WebException) { }  // no HTTP answer to the probe either: the server went away
                catch (IOException) { }
            }
            if (body.Length > 300) body = body.Substring(0, 300) + "…";
            string says = body.Length > 0 ? " The server says: " + body : "";
            string hint = status == 401 ? "set the client's Token to the server's token (shotstream serve --token)"
                        : status == 403 ? "the server refuses this client without a token: start it with --token and set the client's Token"
                        : status == 404 ? "the URL's path must be /v1/direct"
                        : null;
            if (hint != null)
                return new ShotStreamException(0, "the server at " + uri + " refused the WebSocket handshake with HTTP " + status + ": " + hint + "." + says,
                                               e, transient: false, httpStatus: status);
            if (status != 0)
                return new ShotStreamException(0, "the server at " + uri + " answered the WebSocket handshake with HTTP " + status + "." + says,
                                               e, transient: true, httpStatus: status);
            return new ShotStreamException(0, "could not connect to " + uri + ": " + e.Message, e, transient: true);
        }

        /// <summary>One attempt at ConnectAsync + OpenAsync, both within <paramref name="timeout"/>: a peer that accepts the
        /// WebSocket but never answers open (not a ShotStream gateway, a stuck proxy) fails with a Transient
        /// ShotStreamException instead of hanging.</summary>
        public static async Task<ShotStreamConnection> ConnectAndOpenAsync(Uri uri, string token, OpenSession open, TimeSpan timeout,
                                                                           CancellationToken ct = default(CancellationToken))
        {
            if (timeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(timeout), "the open timeout must be positive");
            using (var limit = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                limit.CancelAfter(timeout);
                ShotStreamConnection conn = null;
                try
                {
                    conn = await ConnectAsync(uri, token, limit.Token).ConfigureAwait(false);
                    await conn.OpenAsync(open, limit.Token).ConfigureAwait(false);
                    return conn;
                }
                catch (Exception e) when (limit.IsCancellationRequested && !ct.IsCancellationRequested)
                {
                    if (conn != null) conn.Dispose();
                    throw new ShotStreamException(0, "no answer from " + uri + " within " + timeout.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture)
                        + " s (connect + open): is it a ShotStream gateway, and reachable?", e, transient: true);
                }
                catch
                {
                    if (conn != null) conn.Dispose();
                    throw;
                }
            }
        }

        /// <summary>ConnectAndOpenAsync for a session that continues <paramref name="snapshot"/> (the bytes a snapshot request
        /// delivered, e.g. from a game save; null: a new story, as above): connect and open within <paramref name="timeout"/>,
        /// the open carrying the snapshot's first part; then the rest of it, in parts of <paramref name="partBytes"/>, without a
        /// time limit (open's GlobalCaption and Seed are cleared: the story's are the snapshot's). The server answers `restored` (or a
        /// fatal error) once the whole snapshot has arrived and checks out:
        /// read it with ReceiveAsync. Cues sent meanwhile wait for the restore.</summary>
        public static async Task<ShotStreamConnection> ConnectAndOpenFromSnapshotAsync(Uri uri, string token, OpenSession open, byte[] snapshot, TimeSpan timeout,
                                                                           CancellationToken ct = default(CancellationToken), int partBytes = SnapshotParts.MaxUploadPartBytes)
        {
            if (snapshot == null) return await ConnectAndOpenAsync(uri, token, open, timeout, ct).ConfigureAwait(false);
            if (open == null) throw new ArgumentNullException(nameof(open));
            var parts = SnapshotParts.Split(snapshot, partBytes);  // checks the arguments before connecting
            WithFirstPart(open, snapshot, partBytes);
            var conn = await ConnectAndOpenAsync(uri, token, open, timeout, ct).ConfigureAwait(false);
            try
            {
                await conn.SendSnapshotRestAsync(parts, ct).ConfigureAwait(false);
                return conn;
            }
            catch
            {
                conn.Dispose();
                throw;
            }
        }

        /// <summary>ConnectAndOpenAsync, retried per <paramref name="policy"/> (transient failures only).</summary>
        public static Task<ShotStreamConnection> ConnectAndOpenAsync(Uri uri, string token, OpenSession open, ReconnectPolicy policy, TimeSpan timeout,
                                                                     CancellationToken ct = default(CancellationToken))
        {
            return (policy ?? new ReconnectPolicy()).RunAsync(c => ConnectAndOpenAsync(uri, token, open, timeout, c), ct);
        }

        public Task<SessionOpened> OpenAsync(string caption, ulong seed, FrameFormat format, Transport transport, uint credits,
                                             string clientName = "unity", CancellationToken ct = default(CancellationToken))
        {
            return OpenAsync(new OpenSession { GlobalCaption = caption ?? "", Seed = seed, FrameFormat = format, Transport = transport,
                                               MaxChunksInFlight = credits, ClientName = clientName ?? "" }, ct);
        }

        /// <summary>OpenAsync for a session that continues <paramref name="snapshot"/> (null: a new story, as OpenAsync): open carries its first part, and once the
        /// server has answered `opened` the rest follows as snapshot_part messages (parts of <paramref name="partBytes"/>, at most
        /// 32 KiB). The server then answers `restored`, or a fatal error (damaged: 3 INVALID_ARGUMENT; another model or decoder:
        /// 9 FAILED_PRECONDITION; too big: 8 RESOURCE_EXHAUSTED). Caption, seed and decoder come from the snapshot (open's
        /// GlobalCaption and Seed are cleared; leave its Decoder unset).</summary>
        public async Task<SessionOpened> OpenFromSnapshotAsync(OpenSession open, byte[] snapshot, CancellationToken ct = default(CancellationToken),
                                                   int partBytes = SnapshotParts.MaxUploadPartBytes)
        {
            if (open == null) throw new ArgumentNullException(nameof(open));
            if (snapshot == null) return await OpenAsync(open, ct).ConfigureAwait(false);
            var parts = SnapshotParts.Split(snapshot, partBytes);
            WithFirstPart(open, snapshot, partBytes);
            var opened = await OpenAsync(open, ct).ConfigureAwait(false);
            await SendSnapshotRestAsync(parts, ct).ConfigureAwait(false);
            return opened;
        }

        // The server takes caption and seed from the snapshot and ignores these: leaving them out keeps open (with its 32 KiB
        // part, 43 KiB as base64) within the server's 64 KiB message limit whatever the caption.
        static void WithFirstPart(OpenSession open, byte[] snapshot, int partBytes)
        {
            open.Snapshot = SnapshotParts.First(snapshot, partBytes);
            open.GlobalCaption = "";
            open.Seed = 0;
        }

        async Task SendSnapshotRestAsync(IEnumerable<SnapshotPart> parts, CancellationToken ct)
        {
            bool first = true;
            foreach (var part in parts)
            {
                if (first) { first = false; continue; }  // went with open
                await SendAsync(ClientMessage.SnapshotPartMessage(part), ct).ConfigureAwait(false);
            }
        }

        /// <summary>Asks for the story's snapshot. The server answers with snapshot parts (put them together with a
        /// <see cref="SnapshotAssembler"/>); <paramref name="waitForBoundary"/> false is refused (a non-fatal error 9) while a shot
        /// is in progress, true takes it when the current shot ends, before the next queued one starts. From now on this
        /// connection accepts messages as large as a snapshot part (<see cref="MaxSnapshotPartMessageBytes"/>).</summary>
        public Task RequestSnapshotAsync(bool waitForBoundary = true, CancellationToken ct = default(CancellationToken))
        {
            return SendAsync(ClientMessage.SnapshotMessage(waitForBoundary), ct);
        }

        /// <summary>Asks for the cue log from shot <paramref name="fromShot"/> on; the server answers one page (CueLog.NextShot &gt; 0:
        /// ask again from there; <see cref="CueLogCollector"/> merges the pages).</summary>
        public Task RequestCueLogAsync(uint fromShot = 0, CancellationToken ct = default(CancellationToken))
        {
            return SendAsync(ClientMessage.CueLogMessage(fromShot), ct);
        }

        /// <summary>Sends open and waits for opened; a fatal error throws ShotStreamException. From then on a
        /// message may be as large as the session's largest chunk (and no larger).</summary>
        public async Task<SessionOpened> OpenAsync(OpenSession open, CancellationToken ct = default(CancellationToken))
        {
            await SendAsync(ClientMessage.Open(open), ct).ConfigureAwait(false);
            while (true)
            {
                ServerMessage m = await ReceiveAsync(ct).ConfigureAwait(false);
                if (m == null) throw new ShotStreamException(0, "the server closed the connection before answering open", null, transient: true);
                if (m.Kind == ServerKind.Opened)
                {
                    Session = m.Opened;
                    long frames = Math.Max(Session.FramesFirstChunk, Session.FramesPerChunk);
                    long chunk = frames * Session.Width * Session.Height * 4 + ChunkHeaderAllowance;  // RGBA8, the widest format
                    maxMessageBytes = (int)Math.Min(MaxMessageCeiling, Math.Max(MaxJsonMessageBytes, chunk));
                    return Session;
                }
                if (m.Kind == ServerKind.Error) throw new ShotStreamException(m.Error.Code, m.Error.Message);
                // anything else before opened is unexpected but harmless: skip
            }
        }

        public Task SendCueAsync(Cue cue, CancellationToken ct = default(CancellationToken)) { return SendAsync(ClientMessage.CueMessage(cue), ct); }
        public Task SendCueAsync(string eventId, string prompt, uint numChunks = 0, CueMode mode = CueMode.Unspecified,
                                 CancellationToken ct = default(CancellationToken), params string[] tags)
        {
            var cue = new Cue { EventId = eventId ?? "", Prompt = prompt ?? "", NumChunks = numChunks, Mode = mode };
            if (tags != null) cue.Tags.AddRange(tags);
            return SendCueAsync(cue, ct);
        }
        public Task AckAsync(ulong chunkSeq, CancellationToken ct = default(CancellationToken)) { return SendAsync(ClientMessage.AckMessage(chunkSeq), ct); }
        public Task PauseAsync(CancellationToken ct = default(CancellationToken)) { return SendAsync(ClientMessage.Pause(), ct); }
        public Task ResumeAsync(CancellationToken ct = default(CancellationToken)) { return SendAsync(ClientMessage.Resume(), ct); }
        /// <summary>Starts recording the frames of every later chunk into an MP4 on the server's host; the server
        /// answers take_started (or a non-fatal error: 9 when a take is already recording, 3 for a bad name).
        /// <paramref name="name"/>: 1-64 of A-Z a-z 0-9 - _ . without ".mp4"; "" lets the server name it.</summary>
        public Task StartTakeAsync(string name = "", CancellationToken ct = default(CancellationToken)) { return SendAsync(ClientMessage.StartTakeMessage(name), ct); }
        /// <summary>StartTakeAsync with a <paramref name="quality"/>: Full also re-decodes the recorded shots with the Wan VAE after the
        /// take stops (take_saved then has FullPath and FullBytes); Live (or Unspecified) is left out of the message, as the proto default.</summary>
        public Task StartTakeAsync(string name, TakeQuality quality, CancellationToken ct = default(CancellationToken))
        {
            return SendAsync(ClientMessage.StartTakeMessage(name, quality == TakeQuality.Live ? TakeQuality.Unspecified : quality), ct);
        }
        /// <summary>Finishes the take; the server answers take_saved (path, frames, bytes, duration) or error 9 when none is recording.
        /// Closing the session also finishes it (take_saved comes before closed).</summary>
        public Task StopTakeAsync(CancellationToken ct = default(CancellationToken)) { return SendAsync(ClientMessage.StopTakeMessage(), ct); }
        /// <summary>Asks the server to end the session; keep receiving until `closed` (then null).</summary>
        public Task CloseAsync(CancellationToken ct = default(CancellationToken)) { return SendAsync(ClientMessage.Close(), ct); }

        public async Task SendAsync(ClientMessage msg, CancellationToken ct = default(CancellationToken))
        {
            if (msg == null) throw new ArgumentNullException(nameof(msg));
            if (msg.Kind == ClientKind.Snapshot) snapshotAsked = true;  // before it goes: the parts may come at once
            byte[] data = Encoding.UTF8.GetBytes(msg.ToJson());
            await sendLock.WaitAsync(ct).ConfigureAwait(false);
            try { await ws.SendAsync(new ArraySegment<byte>(data), WebSocketMessageType.Text, true, ct).ConfigureAwait(false); }
            catch (WebSocketException e) { throw new ShotStreamException(0, "sending " + msg.Kind + " failed: " + e.Message, e, transient: true); }
            finally { sendLock.Release(); }
        }

        /// <summary>The next server event; null once the server has closed the connection normally.
        /// A chunk's Pixels point into the reusable receive buffer: valid until the next ReceiveAsync.
        /// A fatal error throws ShotStreamException (code/message from the server), and so does a message larger
        /// than the session's largest chunk (1 MiB before the session opens; once this connection has asked for a
        /// snapshot, a snapshot part's <see cref="MaxSnapshotPartMessageBytes"/> too).</summary>
        public async Task<ServerMessage> ReceiveAsync(CancellationToken ct = default(CancellationToken))
        {
            while (true)
            {
                if (closedByServer) return null;
                int count = 0;
                WebSocketReceiveResult r;
                do
                {
                    if (count == buffer.Length)
                    {
                        int limit = MessageLimit;
                        if (count >= limit)
                            throw new ShotStreamException(0, "a message from the server is larger than " + limit + " bytes, "
                                + (Session == null ? "the limit before the session opens"
                                   : limit > maxMessageBytes ? "more than a chunk of this session or a snapshot part takes"
                                   : "more than a chunk of this session takes (frames per chunk x width x height x 4 + header)")
                                + ": is the server a ShotStream gateway of this protocol version?");
                        Array.Resize(ref buffer, (int)Math.Min((long)buffer.Length * 2, limit));
                    }
                    try { r = await ws.ReceiveAsync(new ArraySegment<byte>(buffer, count, buffer.Length - count), ct).ConfigureAwait(false); }
                    catch (WebSocketException e) { throw new ShotStreamException(0, "the connection to the server was lost: " + e.Message, e, transient: true); }
                    count += r.Count;
                } while (!r.EndOfMessage && r.MessageType != WebSocketMessageType.Close);

                if (r.MessageType == WebSocketMessageType.Close)
                {
                    closedByServer = true;
                    if (ws.State == WebSocketState.CloseReceived)
                    {
                        try { await ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "", ct).ConfigureAwait(false); } catch (WebSocketException) { }
                    }
                    var status = r.CloseStatus ?? WebSocketCloseStatus.Empty;
                    if (status == WebSocketCloseStatus.NormalClosure || status == WebSocketCloseStatus.Empty) return null;
                    // 1001: the gateway is stopping (a restart), 1011: a server fault; anything else would recur.
                    bool transient = status == WebSocketCloseStatus.EndpointUnavailable || status == WebSocketCloseStatus.InternalServerError;
                    throw new ShotStreamException(0, "the server closed the connection: " + (int)status + " " + r.CloseStatusDescription, null, transient);
                }
                ServerMessage m;
                try
                {
                    if (r.MessageType == WebSocketMessageType.Binary)
                    {
                        if (!ChunkFrame.HasKnownMagic(buffer, 0, count)) continue;  // reserved for future versions
                        m = new ServerMessage(ServerKind.Chunk, ChunkFrame.Decode(buffer, 0, count));
                    }
                    else m = ServerMessage.FromJsonValue(Json.Parse(buffer, 0, count));
                }
                catch (FormatException e) { throw new ShotStreamException(0, "malformed message from the server: " + e.Message, e); }
                if (m.Kind == ServerKind.Error && m.Error.Fatal) throw new ShotStreamException(m.Error.Code, m.Error.Message);
                return m;
            }
        }

        int MessageLimit { get { return Session != null && snapshotAsked ? Math.Max(maxMessageBytes, MaxSnapshotPartMessageBytes) : maxMessageBytes; } }

        /// <summary>Aborts the WebSocket at once (a pending receive or send fails) and frees it. The send lock is
        /// left alone: a send still in flight releases it as it fails, and it holds no wait handle to free.</summary>
        public void Dispose() { ws.Dispose(); }
    }
}
