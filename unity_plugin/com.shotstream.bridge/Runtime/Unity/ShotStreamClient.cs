// A ShotStream Direct session as a MonoBehaviour: the network runs off the main thread; events are
// handed to the main thread through a thread-safe queue drained in Update().
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using ShotStream.Core;
using UnityEngine;
using UnityEngine.Events;

namespace ShotStream.Unity
{
    public enum ShotTransport { Inline = 1, SharedMemory = 2 }
    public enum ShotFrameFormat { Rgba8 = 2 }

    [Serializable] public sealed class SessionOpenedEvent : UnityEvent<SessionOpened> { }
    [Serializable] public sealed class ShotStartedEvent : UnityEvent<ShotStarted> { }
    [Serializable] public sealed class ShotFinishedEvent : UnityEvent<ShotFinished> { }
    [Serializable] public sealed class ShotErrorEvent : UnityEvent<string> { }
    [Serializable] public sealed class TakeStartedEvent : UnityEvent<TakeStarted> { }
    [Serializable] public sealed class TakeSavedEvent : UnityEvent<TakeSaved> { }

    /// <summary>
    /// Connects on Start, opens a session, and feeds chunks to a <see cref="ShotStreamScreen"/>.
    /// <para>Threading: one background task connects (retried per <see cref="ReconnectPolicy"/>) and
    /// runs ShotStreamConnection's receive loop; it copies each chunk's pixels (inline frame or
    /// shared-memory slot) into a pooled buffer and enqueues the event. Update() drains the queue on
    /// the main thread, raises the UnityEvents, pushes frames into the screen and acks a chunk once
    /// the screen has presented its last frame (so the server's credit window follows playback).</para>
    /// </summary>
    [AddComponentMenu("ShotStream/ShotStream Client")]
    [DisallowMultipleComponent]
    public sealed class ShotStreamClient : MonoBehaviour
    {
        [Header("Server")]
        [SerializeField] string serverUrl = "ws://127.0.0.1:50052/v1/direct";
        [Tooltip("Bearer token (leave empty when the gateway has no token)")]
        [SerializeField] string token = "";
        [SerializeField] ShotTransport transport = ShotTransport.Inline;
        [SerializeField] ShotFrameFormat frameFormat = ShotFrameFormat.Rgba8;
        [Header("Session")]
        [TextArea(1, 4)]
        [SerializeField] string globalCaption = "";
        [SerializeField] long seed = 0;
        [Tooltip("Chunks the server may send before they are acked (0 = server default)")]
        [SerializeField] int maxChunksInFlight = 2;
        [SerializeField] bool connectOnStart = true;
        [Header("Reconnect")]
        [SerializeField] float reconnectInitialSeconds = 0.25f;
        [SerializeField] float reconnectMaxSeconds = 10f;
        [Tooltip("Retries after a failure; negative = forever")]
        [SerializeField] int reconnectMaxRetries = 5;
        [Header("Output")]
        [SerializeField] ShotStreamScreen screen = null;

        [Header("Events")]
        public SessionOpenedEvent sessionOpened = new SessionOpenedEvent();
        public ShotStartedEvent shotStarted = new ShotStartedEvent();
        public ShotFinishedEvent shotFinished = new ShotFinishedEvent();
        public ShotErrorEvent error = new ShotErrorEvent();
        /// <summary>The server started recording a take (path: where the MP4 goes on the server's host).</summary>
        public TakeStartedEvent takeStarted = new TakeStartedEvent();
        /// <summary>A take's MP4 is complete (after StopTake, or when the session ends while recording).</summary>
        public TakeSavedEvent takeSaved = new TakeSavedEvent();

        struct Pending
        {
            public ServerMessage Message;
            public byte[] Pixels;   // pooled copy of a chunk's pixels (null otherwise)
            public string Error;    // a failure to report (Message null)
        }

        struct PendingAck { public ulong Seq; public long LastFrameIndex; }

        readonly ConcurrentQueue<Pending> inbox = new ConcurrentQueue<Pending>();
        readonly ConcurrentDictionary<int, ConcurrentBag<byte[]>> pixelPools = new ConcurrentDictionary<int, ConcurrentBag<byte[]>>();
        readonly Queue<PendingAck> acks = new Queue<PendingAck>();
        readonly List<ClientMessage> unsent = new List<ClientMessage>();  // cues and takes asked for before the session opened, in order
        readonly object connLock = new object();
        ShotStreamConnection connection;
        CancellationTokenSource cts;
        Task loop;
        int cueCounter;

        /// <summary>Test seam: when set, outgoing messages go here instead of the network.</summary>
        internal Func<ClientMessage, Task> SendHook;

        public string ServerUrl { get { return serverUrl; } set { serverUrl = value; } }
        public string Token { get { return token; } set { token = value; } }
        public ShotTransport Transport { get { return transport; } set { transport = value; } }
        public string GlobalCaption { get { return globalCaption; } set { globalCaption = value; } }
        public ulong Seed { get { return unchecked((ulong)seed); } set { seed = unchecked((long)value); } }
        /// <summary>Chunks the server may send before they are acked (0 = server default).</summary>
        public int MaxChunksInFlight { get { return maxChunksInFlight; } set { maxChunksInFlight = Math.Max(0, value); } }
        public ShotStreamScreen Screen { get { return screen; } set { screen = value; } }
        public SessionOpened Session { get; private set; }
        public bool IsConnected { get { lock (connLock) return connection != null; } }

        public ReconnectPolicy ReconnectPolicy
        {
            get
            {
                return new ReconnectPolicy
                {
                    InitialDelay = TimeSpan.FromSeconds(Math.Max(0.0, reconnectInitialSeconds)),
                    MaxDelay = TimeSpan.FromSeconds(Math.Max(reconnectInitialSeconds, reconnectMaxSeconds)),
                    MaxRetries = reconnectMaxRetries,
                };
            }
            set
            {
                if (value == null) throw new ArgumentNullException(nameof(value));
                reconnectInitialSeconds = (float)value.InitialDelay.TotalSeconds;
                reconnectMaxSeconds = (float)value.MaxDelay.TotalSeconds;
                reconnectMaxRetries = value.MaxRetries;
            }
        }

        /// <summary>The open message this client sends.</summary>
        public OpenSession BuildOpen()
        {
            return new OpenSession
            {
                ClientName = "unity",
                GlobalCaption = globalCaption ?? "",
                Seed = Seed,
                FrameFormat = (FrameFormat)(int)frameFormat,
                Transport = (Core.Transport)(int)transport,
                MaxChunksInFlight = (uint)Math.Max(0, maxChunksInFlight),
            };
        }

        void Start() { if (connectOnStart) Connect(); }

        /// <summary>Starts the background connect/receive loop (no-op when already running).</summary>
        public void Connect()
        {
            if (loop != null && !loop.IsCompleted) return;
            Uri uri;
            if (!Uri.TryCreate(serverUrl, UriKind.Absolute, out uri) || (uri.Scheme != "ws" && uri.Scheme != "wss"))
            {
                Report("ShotStreamClient: bad server URL \"" + serverUrl + "\" (expected ws://HOST:PORT/v1/direct)");
                return;
            }
            cts = new CancellationTokenSource();
            var open = BuildOpen();
            var policy = ReconnectPolicy;
            string tok = token;
            var ct = cts.Token;
            loop = Task.Run(() => RunAsync(uri, tok, open, policy, ct));
        }

        // Connect+open is retried with backoff by ConnectAndOpenAsync (per the policy); when it gives
        // up, or the server refuses (a server error code), the loop ends and `error` is raised. A session
        // that drops after opening is reconnected (after the policy's first delay) as a new session.
        async Task RunAsync(Uri uri, string tok, OpenSession open, ReconnectPolicy policy, CancellationToken ct)
        {
            while (!ct.IsCancellationRequested)
            {
                ShotStreamConnection conn = null;
                RingReader ring = null;
                bool opened = false;
                try
                {
                    conn = await ShotStreamConnection.ConnectAndOpenAsync(uri, tok, open, policy, ct).ConfigureAwait(false);
                    opened = true;
                    if (conn.Session.Ring != null)
                    {
                        var r = conn.Session.Ring;
                        ring = new RingReader(r.Path, (int)r.SlotCount, (long)r.SlotBytes, (int)r.HeaderBytes, (int)r.SlotHeaderBytes);
                    }
                    lock (connLock) connection = conn;
                    inbox.Enqueue(new Pending { Message = new ServerMessage(ServerKind.Opened, conn.Session) });
                    while (!ct.IsCancellationRequested)
                    {
                        ServerMessage m = await conn.ReceiveAsync(ct).ConfigureAwait(false);
                        if (m == null) return;  // closed by the server normally
                        byte[] pixels = null;
                        if (m.Kind == ServerKind.Chunk) pixels = CopyPixels(m.Chunk, ring);
                        inbox.Enqueue(new Pending { Message = m, Pixels = pixels });
                        if (m.Kind == ServerKind.Closed) return;
                    }
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested) { return; }
                catch (ShotStreamException e) when (e.Code != 0)
                {
                    inbox.Enqueue(new Pending { Error = e.Message });  // the server refused: do not retry
                    return;
                }
                catch (Exception e)
                {
                    inbox.Enqueue(new Pending { Error = "ShotStreamClient: " + e.Message });
                    if (!opened || !policy.ShouldRetry(0)) return;
                }
                finally
                {
                    lock (connLock) { if (connection == conn) connection = null; }
                    if (ring != null) ring.Dispose();
                    if (conn != null) conn.Dispose();
                }
                try { await Task.Delay(policy.DelayFor(0), ct).ConfigureAwait(false); }
                catch (OperationCanceledException) { return; }
            }
        }

        /// <summary>True while the background connect/receive loop runs.</summary>
        public bool IsRunning { get { return loop != null && !loop.IsCompleted; } }

        byte[] CopyPixels(FrameChunk chunk, RingReader ring)
        {
            long n = chunk.ExpectedPixelBytes;
            if (n <= 0 || n > int.MaxValue) return null;
            byte[] buf = Rent((int)n);
            if (chunk.HasPixels)
            {
                Buffer.BlockCopy(chunk.Pixels.Array, chunk.Pixels.Offset, buf, 0, (int)n);
                return buf;
            }
            if (chunk.RingSlot != null && ring != null)
            {
                RingReadStatus status;
                var s = chunk.RingSlot;
                if (ring.TryRead((int)s.Slot, s.Sequence, (long)s.Offset, (long)s.Length, buf, out status)) return buf;
                inbox.Enqueue(new Pending { Error = "ShotStreamClient: chunk " + chunk.ChunkSeq + " lost in the shared-memory ring (" + status + ")" });
            }
            Return(buf);
            return null;
        }

        // Pixel copies are pooled per size (a session has two: first chunk and later chunks), so the
        // receive loop allocates only until the pool is warm.
        byte[] Rent(int length)
        {
            ConcurrentBag<byte[]> bag;
            byte[] b;
            if (pixelPools.TryGetValue(length, out bag) && bag.TryTake(out b)) return b;
            return new byte[length];
        }

        void Return(byte[] buffer)
        {
            if (buffer != null) pixelPools.GetOrAdd(buffer.Length, NewBag).Add(buffer);
        }

        static readonly Func<int, ConcurrentBag<byte[]>> NewBag = _ => new ConcurrentBag<byte[]>();

        /// <summary>Test seam: hands a server event to the main-thread queue as the receive loop would
        /// (<paramref name="pixels"/>: the chunk's pixel copy, returned to the pool after dispatch).</summary>
        internal void Deliver(ServerMessage message, byte[] pixels = null)
        {
            if (message == null) throw new ArgumentNullException(nameof(message));
            inbox.Enqueue(new Pending { Message = message, Pixels = pixels });
        }

        void Update() { Pump(Time.realtimeSinceStartupAsDouble); }

        /// <summary>Main thread: dispatch queued events, feed the screen, send due acks.</summary>
        internal void Pump(double nowSeconds)
        {
            Pending p;
            while (inbox.TryDequeue(out p))
            {
                if (p.Message == null) { Report(p.Error); continue; }
                try { Dispatch(p, nowSeconds); }
                catch (Exception e) { Debug.LogException(e); }
                finally { Return(p.Pixels); }
            }
            while (acks.Count > 0)
            {
                var a = acks.Peek();
                if (screen != null && screen.PresentedFrameIndex < a.LastFrameIndex) break;
                acks.Dequeue();
                Send(ClientMessage.AckMessage(a.Seq));
            }
        }

        void Dispatch(Pending p, double now)
        {
            var m = p.Message;
            switch (m.Kind)
            {
                case ServerKind.Opened:
                    Session = m.Opened;
                    acks.Clear();
                    pixelPools.Clear();
                    if (screen != null) screen.OnSessionOpened(Session);
                    sessionOpened.Invoke(Session);
                    ClientMessage[] toSend;
                    lock (unsent) { toSend = unsent.ToArray(); unsent.Clear(); }
                    foreach (var c in toSend) Send(c);
                    break;
                case ServerKind.ShotStarted: shotStarted.Invoke(m.ShotStarted); break;
                case ServerKind.ShotFinished: shotFinished.Invoke(m.ShotFinished); break;
                case ServerKind.TakeStarted: takeStarted.Invoke(m.TakeStarted); break;
                case ServerKind.TakeSaved: takeSaved.Invoke(m.TakeSaved); break;
                case ServerKind.Error: Report("ShotStream server error " + m.Error.Code + ": " + m.Error.Message); break;
                case ServerKind.Chunk:
                    var chunk = m.Chunk;
                    long last = -1;
                    if (screen != null && p.Pixels != null)
                    {
                        if (chunk.Width != screen.Width || chunk.Height != screen.Height)
                            screen.Configure((int)chunk.Width, (int)chunk.Height);
                        int accepted = screen.PushFrames(p.Pixels, 0, (int)chunk.NumFrames, now);
                        if (accepted < chunk.NumFrames)
                            Debug.LogWarning("ShotStreamClient: screen buffer full, dropped " + (chunk.NumFrames - accepted) + " frames of chunk " + chunk.ChunkSeq);
                        last = screen.PushedFrames - 1;
                    }
                    acks.Enqueue(new PendingAck { Seq = chunk.ChunkSeq, LastFrameIndex = last });
                    break;
            }
        }

        /// <summary>Builds the cue message for a prompt (event id "unity-N", mode cut or wait).</summary>
        internal Cue BuildCue(string prompt, int chunks, bool cut, params string[] tags)
        {
            if (string.IsNullOrEmpty(prompt)) throw new ArgumentException("a cue needs a prompt", nameof(prompt));
            if (chunks < 0) throw new ArgumentOutOfRangeException(nameof(chunks), "chunks must be >= 0 (0 = server default)");
            var cue = new Cue
            {
                EventId = "unity-" + Interlocked.Increment(ref cueCounter),
                Prompt = prompt,
                NumChunks = (uint)chunks,
                Mode = cut ? CueMode.Cut : CueMode.Wait,
            };
            if (tags != null) foreach (var t in tags) if (!string.IsNullOrEmpty(t)) cue.Tags.Add(t);
            return cue;
        }

        /// <summary>Queues a shot: sent now when connected, else once the session opens. Returns its event id.</summary>
        public string Cue(string prompt, int chunks = 0, bool cut = false, params string[] tags)
        {
            var cue = BuildCue(prompt, chunks, cut, tags);
            SendOrQueue(ClientMessage.CueMessage(cue));
            return cue.EventId;
        }

        /// <summary>Records the frames of every later chunk into an MP4 on the server's host (`serve --takes-dir`);
        /// sent now when connected, else once the session opens (so a take can cover the first shot).
        /// <paramref name="name"/>: 1-64 of A-Z a-z 0-9 - _ . without ".mp4"; "" lets the server name it.
        /// Answered by <see cref="takeStarted"/>, or <see cref="error"/> (already recording, bad name).</summary>
        public void StartTake(string name = "") { SendOrQueue(ClientMessage.StartTakeMessage(name)); }

        /// <summary>Finishes the take; answered by <see cref="takeSaved"/> with the MP4's path, frames and size.</summary>
        public void StopTake() { SendOrQueue(ClientMessage.StopTakeMessage()); }

        void SendOrQueue(ClientMessage msg)
        {
            bool connected;
            lock (connLock) connected = connection != null && Session != null;
            if (SendHook != null || connected) Send(msg);
            else lock (unsent) unsent.Add(msg);
        }

        void Send(ClientMessage msg)
        {
            Task t;
            if (SendHook != null) t = SendHook(msg);
            else
            {
                ShotStreamConnection conn;
                lock (connLock) conn = connection;
                if (conn == null) return;
                t = conn.SendAsync(msg, cts != null ? cts.Token : CancellationToken.None);
            }
            t.ContinueWith(x => inbox.Enqueue(new Pending { Error = "ShotStreamClient: sending " + msg.Kind + " failed: " + x.Exception.GetBaseException().Message }),
                           TaskContinuationOptions.OnlyOnFaulted);
        }

        void Report(string message)
        {
            if (string.IsNullOrEmpty(message)) return;
            Debug.LogWarning(message);
            error.Invoke(message);
        }

        /// <summary>Sends close, stops the loop and drops the connection. A take still recording is finished by
        /// the service all the same, but no takeSaved is raised for it: StopTake first to get its path.</summary>
        public void Close()
        {
            ShotStreamConnection conn;
            lock (connLock) conn = connection;
            if (conn != null)
            {
                try { conn.CloseAsync().Wait(TimeSpan.FromSeconds(1)); } catch (Exception) { }
            }
            if (cts != null) { cts.Cancel(); }
            if (loop != null) { try { loop.Wait(TimeSpan.FromSeconds(2)); } catch (Exception) { } }
            if (cts != null) { cts.Dispose(); cts = null; }
            loop = null;
            Session = null;
        }

        void OnDestroy() { Close(); }
    }
}
