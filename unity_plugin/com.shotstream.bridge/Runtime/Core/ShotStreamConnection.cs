// A Direct session over the WebSocket engine gateway (ws://HOST:PORT/v1/direct), no UnityEngine.
// Not thread-safe for concurrent receives: one reader task; sends are serialized internally.
using System;
using System.Net.WebSockets;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace ShotStream.Core
{
    /// <summary>A session-level failure: a fatal server error (Code/Message from the server), a refused
    /// handshake, a protocol violation, or the connection ending unexpectedly.</summary>
    public sealed class ShotStreamException : Exception
    {
        /// <summary>grpc.StatusCode value from the server's Error (0 when the failure is local).</summary>
        public readonly uint Code;
        public readonly string ServerMessage;
        public ShotStreamException(uint code, string message, Exception inner = null)
            : base(code != 0 ? "shotstream error " + code + ": " + message : message, inner)
        {
            Code = code; ServerMessage = message;
        }
    }

    /// <summary>Exponential backoff for reconnecting: Initial * Multiplier^attempt, capped at Max.</summary>
    public sealed class ReconnectPolicy
    {
        public TimeSpan InitialDelay = TimeSpan.FromMilliseconds(250);
        public TimeSpan MaxDelay = TimeSpan.FromSeconds(10);
        public double Multiplier = 2.0;
        /// <summary>Attempts after the first failure; 0 = never retry, negative = forever.</summary>
        public int MaxRetries = 5;

        /// <summary>Delay before retry number <paramref name="retry"/> (0-based).</summary>
        public TimeSpan DelayFor(int retry)
        {
            if (retry < 0) throw new ArgumentOutOfRangeException(nameof(retry));
            if (Multiplier < 1) throw new InvalidOperationException("Multiplier must be >= 1");
            double ms = InitialDelay.TotalMilliseconds * Math.Pow(Multiplier, Math.Min(retry, 62));
            if (double.IsInfinity(ms) || double.IsNaN(ms) || ms > MaxDelay.TotalMilliseconds) ms = MaxDelay.TotalMilliseconds;
            return TimeSpan.FromMilliseconds(ms);
        }

        public bool ShouldRetry(int retry) { return MaxRetries < 0 || retry < MaxRetries; }

        /// <summary>Runs <paramref name="attempt"/> until it succeeds, retrying failures with backoff
        /// (a ShotStreamException carrying a server code is not retried: the server refused).</summary>
        public async Task<T> RunAsync<T>(Func<CancellationToken, Task<T>> attempt, CancellationToken ct = default(CancellationToken),
                                         Func<TimeSpan, CancellationToken, Task> delay = null)
        {
            for (int retry = 0; ; retry++)
            {
                try { return await attempt(ct).ConfigureAwait(false); }
                catch (OperationCanceledException) when (ct.IsCancellationRequested) { throw; }
                catch (ShotStreamException e) when (e.Code != 0) { throw; }
                catch (Exception) when (ShouldRetry(retry))
                {
                    await (delay ?? Task.Delay)(DelayFor(retry), ct).ConfigureAwait(false);
                }
            }
        }
    }

    public sealed class ShotStreamConnection : IDisposable
    {
        public const int DefaultReceiveBufferBytes = 1 << 16;
        readonly ClientWebSocket ws;
        readonly SemaphoreSlim sendLock = new SemaphoreSlim(1, 1);
        byte[] buffer;
        bool closedByServer;

        public SessionOpened Session { get; private set; }
        public WebSocketState State { get { return ws.State; } }

        ShotStreamConnection(ClientWebSocket ws, int initialBuffer) { this.ws = ws; buffer = new byte[Math.Max(initialBuffer, 1024)]; }

        /// <summary>Opens the WebSocket (Authorization: Bearer token when a token is given).</summary>
        public static async Task<ShotStreamConnection> ConnectAsync(Uri uri, string token = null, CancellationToken ct = default(CancellationToken))
        {
            if (uri == null) throw new ArgumentNullException(nameof(uri));
            var ws = new ClientWebSocket();
            if (!string.IsNullOrEmpty(token)) ws.Options.SetRequestHeader("Authorization", "Bearer " + token);
            try { await ws.ConnectAsync(uri, ct).ConfigureAwait(false); }
            catch (WebSocketException e)
            {
                ws.Dispose();
                throw new ShotStreamException(0, "could not connect to " + uri + " (wrong URL/port, missing or wrong token, server down?): " + e.Message, e);
            }
            catch { ws.Dispose(); throw; }
            return new ShotStreamConnection(ws, DefaultReceiveBufferBytes);
        }

        /// <summary>ConnectAsync + OpenAsync, retried per <paramref name="policy"/>.</summary>
        public static Task<ShotStreamConnection> ConnectAndOpenAsync(Uri uri, string token, OpenSession open, ReconnectPolicy policy,
                                                                     CancellationToken ct = default(CancellationToken))
        {
            return (policy ?? new ReconnectPolicy()).RunAsync(async c =>
            {
                var conn = await ConnectAsync(uri, token, c).ConfigureAwait(false);
                try { await conn.OpenAsync(open, c).ConfigureAwait(false); return conn; }
                catch { conn.Dispose(); throw; }
            }, ct);
        }

        public Task<SessionOpened> OpenAsync(string caption, ulong seed, FrameFormat format, Transport transport, uint credits,
                                             string clientName = "unity", CancellationToken ct = default(CancellationToken))
        {
            return OpenAsync(new OpenSession { GlobalCaption = caption ?? "", Seed = seed, FrameFormat = format, Transport = transport,
                                               MaxChunksInFlight = credits, ClientName = clientName ?? "" }, ct);
        }

        /// <summary>Sends open and waits for opened; a fatal error throws ShotStreamException.</summary>
        public async Task<SessionOpened> OpenAsync(OpenSession open, CancellationToken ct = default(CancellationToken))
        {
            await SendAsync(ClientMessage.Open(open), ct).ConfigureAwait(false);
            while (true)
            {
                ServerMessage m = await ReceiveAsync(ct).ConfigureAwait(false);
                if (m == null) throw new ShotStreamException(0, "the server closed the connection before answering open");
                if (m.Kind == ServerKind.Opened) { Session = m.Opened; return Session; }
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
        /// <summary>Finishes the take; the server answers take_saved (path, frames, bytes, duration) or error 9 when none is recording.
        /// Closing the session also finishes it (take_saved comes before closed).</summary>
        public Task StopTakeAsync(CancellationToken ct = default(CancellationToken)) { return SendAsync(ClientMessage.StopTakeMessage(), ct); }
        /// <summary>Asks the server to end the session; keep receiving until `closed` (then null).</summary>
        public Task CloseAsync(CancellationToken ct = default(CancellationToken)) { return SendAsync(ClientMessage.Close(), ct); }

        public async Task SendAsync(ClientMessage msg, CancellationToken ct = default(CancellationToken))
        {
            byte[] data = Encoding.UTF8.GetBytes(msg.ToJson());
            await sendLock.WaitAsync(ct).ConfigureAwait(false);
            try { await ws.SendAsync(new ArraySegment<byte>(data), WebSocketMessageType.Text, true, ct).ConfigureAwait(false); }
            catch (WebSocketException e) { throw new ShotStreamException(0, "sending " + msg.Kind + " failed: " + e.Message, e); }
            finally { sendLock.Release(); }
        }

        /// <summary>The next server event; null once the server has closed the connection normally.
        /// A chunk's Pixels point into the reusable receive buffer: valid until the next ReceiveAsync.
        /// A fatal error throws ShotStreamException (code/message from the server).</summary>
        public async Task<ServerMessage> ReceiveAsync(CancellationToken ct = default(CancellationToken))
        {
            while (true)
            {
                if (closedByServer) return null;
                int count = 0;
                WebSocketReceiveResult r;
                do
                {
                    if (count == buffer.Length) Array.Resize(ref buffer, checked(buffer.Length * 2));
                    try { r = await ws.ReceiveAsync(new ArraySegment<byte>(buffer, count, buffer.Length - count), ct).ConfigureAwait(false); }
                    catch (WebSocketException e) { throw new ShotStreamException(0, "the connection to the server was lost: " + e.Message, e); }
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
                    throw new ShotStreamException(0, "the server closed the connection: " + (int)status + " " + r.CloseStatusDescription);
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

        /// <summary>Closes the WebSocket handshake politely (does not send the `close` message).</summary>
        public async Task DisconnectAsync(CancellationToken ct = default(CancellationToken))
        {
            if (ws.State == WebSocketState.Open || ws.State == WebSocketState.CloseReceived)
            {
                try { await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, "", ct).ConfigureAwait(false); } catch (WebSocketException) { }
            }
        }

        public void Dispose() { ws.Dispose(); sendLock.Dispose(); }
    }
}
