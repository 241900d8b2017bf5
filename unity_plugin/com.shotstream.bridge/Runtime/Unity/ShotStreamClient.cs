// A ShotStream Direct session as a MonoBehaviour: the network runs off the main thread; events are
// handed to the main thread through a thread-safe queue drained in Update().
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Threading;
using System.Threading.Tasks;
using ShotStream.Core;
using UnityEngine;
using UnityEngine.Events;
using Debug = UnityEngine.Debug;

namespace ShotStream.Unity
{
    public enum ShotTransport { Inline = 1, SharedMemory = 2 }
    /// <summary>The decoder a session asks for: ServerDefault (the server's choice), Wan (the Wan2.1 VAE: exact frames) or
    /// Tae (a tiny preview decoder: much faster, somewhat lower quality; needs a server that has it).</summary>
    public enum ShotDecoder { ServerDefault = 0, Wan = 1, Tae = 2 }

    [Serializable] public sealed class SessionOpenedEvent : UnityEvent<SessionOpened> { }
    /// <summary>A session ended; the argument is why ("server shutdown", "client", "connection lost: ...", "error ...").</summary>
    [Serializable] public sealed class SessionClosedEvent : UnityEvent<string> { }
    [Serializable] public sealed class ShotStartedEvent : UnityEvent<ShotStarted> { }
    [Serializable] public sealed class ShotFinishedEvent : UnityEvent<ShotFinished> { }
    [Serializable] public sealed class ShotErrorEvent : UnityEvent<string> { }
    [Serializable] public sealed class ServerErrorEvent : UnityEvent<ServerError> { }
    [Serializable] public sealed class TakeStartedEvent : UnityEvent<TakeStarted> { }
    [Serializable] public sealed class TakeSavedEvent : UnityEvent<TakeSaved> { }
    /// <summary>A chunk arrived: its header (sequence, cue, shot, frames, timings); its pixels go to the screen.</summary>
    [Serializable] public sealed class ChunkReceivedEvent : UnityEvent<FrameChunk> { }
    /// <summary>A cue's first chunk arrived: (event id, milliseconds since the cue was sent).</summary>
    [Serializable] public sealed class CueLatencyEvent : UnityEvent<string, float> { }
    /// <summary>The story's snapshot, every part in: (its bytes, the shot the story continues with). Keep the bytes with the game
    /// save (<see cref="ShotStreamSnapshotFile"/>) and continue them later with <see cref="ShotStreamClient.ContinueFromSnapshot"/>.</summary>
    [Serializable] public sealed class SnapshotReadyEvent : UnityEvent<byte[], int> { }
    /// <summary>A session that continues a snapshot or forks another has its story: the next cue becomes shot NextShotIndex.</summary>
    [Serializable] public sealed class SnapshotRestoredEvent : UnityEvent<SnapshotRestored> { }
    /// <summary>The session's whole cue log (every page merged): what it played, exactly.</summary>
    [Serializable] public sealed class CueLogEvent : UnityEvent<CueLog> { }

    /// <summary>
    /// Connects when enabled (Connect On Start), opens a session, and feeds chunks to a <see cref="ShotStreamScreen"/>;
    /// closes when disabled.
    /// <para>Threading: one background task connects and runs ShotStreamConnection's receive loop; it copies
    /// each chunk's pixels (inline frame or shared-memory slot) into a pooled buffer and enqueues the event.
    /// Update() drains the queue on the main thread, raises the UnityEvents, pushes frames into the screen and
    /// acks a chunk once the screen has presented its last frame (so the server's credit window follows
    /// playback), or at once when there is no active screen to wait for.</para>
    /// <para>Reconnecting: a lost connection, a server restart ("server shutdown") or a failed attempt is
    /// retried per <see cref="ReconnectPolicy"/>, counting consecutive failures across reconnects (the count
    /// starts over once a chunk arrives); a refused handshake, a server error or a protocol violation is
    /// reported once and not retried. Every reconnect is a new server session.</para>
    /// <para>Resume Story On Reconnect (<see cref="ResumeStory"/>, on by default): the client asks for the story's snapshot as every
    /// shot starts (taken when that shot ends) and keeps the latest in memory. When the server goes away (connection lost, closed
    /// "server shutdown" or "server draining", or the server closing the connection without a reason) the reconnect continues that
    /// snapshot, on whichever server the proxy picks, and cues again, in order, the shot that was in progress (from its start) and the
    /// cues still queued: the story loses at most the shot in progress. Without a snapshot yet it opens a new story with the same
    /// caption and seed. <see cref="storyResumed"/> says which. Off: every reconnect starts the story over.</para>
    /// </summary>
    [AddComponentMenu("ShotStream/ShotStream Client")]
    [DisallowMultipleComponent]
    public sealed class ShotStreamClient : MonoBehaviour
    {
        [Header("Server")]
        [SerializeField] string serverUrl = "ws://127.0.0.1:50052/v1/direct";
        [Tooltip("Bearer token (leave empty when the gateway has no token)")]
        [SerializeField] string token = "";
        [Tooltip("Shared memory needs the server on this machine, run by the same user; otherwise the client falls back to Inline")]
        [SerializeField] ShotTransport transport = ShotTransport.Inline;
        [Tooltip("Seconds an attempt may take to connect and get the server's answer to open")]
        [SerializeField] float openTimeoutSeconds = 10f;
        [Header("Session")]
        [TextArea(1, 4)]
        [SerializeField] string globalCaption = "";
        [SerializeField] long seed = 0;
        [Tooltip("Chunks the server may send before they are acked (0 = server default)")]
        [SerializeField] int maxChunksInFlight = 2;
        [Tooltip("What decodes the frames: the server's default, the Wan VAE (exact) or the tiny TAE preview decoder (faster; the server must have it)")]
        [SerializeField] ShotDecoder decoder = ShotDecoder.ServerDefault;
        // Serialized name kept from 0.1 scenes; the client connects in OnEnable and closes in OnDisable.
        [Tooltip("Connect when the component is enabled (and close when it is disabled)")]
        [SerializeField] bool connectOnStart = true;
        [Header("Reconnect")]
        [SerializeField] float reconnectInitialSeconds = 0.25f;
        [SerializeField] float reconnectMaxSeconds = 10f;
        [Tooltip("Consecutive failures retried; negative = forever")]
        [SerializeField] int reconnectMaxRetries = 5;
        [Tooltip("Resume Story On Reconnect: keep a snapshot of the story at every shot boundary and, when the server goes away, continue the story from it on the server the reconnect reaches (re-cueing the shot in progress and the queued cues); off: a reconnect starts a new story")]
        [SerializeField] bool resumeStory = true;
        [Header("Output")]
        [SerializeField] ShotStreamScreen screen = null;

        [Header("Events")]
        public SessionOpenedEvent sessionOpened = new SessionOpenedEvent();
        /// <summary>The session ended: the server closed it ("server shutdown": the client reconnects; "client"),
        /// the connection was lost (the client reconnects), or a fatal error. Not raised by <see cref="Close"/>.</summary>
        public SessionClosedEvent sessionClosed = new SessionClosedEvent();
        public ShotStartedEvent shotStarted = new ShotStartedEvent();
        public ShotFinishedEvent shotFinished = new ShotFinishedEvent();
        /// <summary>On screen (from the client's Screen): a shot's first frame is shown. shotStarted is the server starting it, earlier.</summary>
        public ShotOnScreenEvent shotPresented = new ShotOnScreenEvent();
        /// <summary>On screen (from the client's Screen): a shot has ended, its last frame shown for its full time. shotFinished is
        /// the server's message, up to the frames in flight (about 2 s) earlier.</summary>
        public ShotOnScreenEvent shotEnded = new ShotOnScreenEvent();
        /// <summary>Every problem, as text (also logged as a warning).</summary>
        public ShotErrorEvent error = new ShotErrorEvent();
        /// <summary>A non-fatal error from the server (the session goes on), e.g. a rejected cue: its EventId names the cue.</summary>
        public ServerErrorEvent serverError = new ServerErrorEvent();
        /// <summary>The server started recording a take (path: where the MP4 goes on the server's host; quality as granted;
        /// FullPath: where the Wan-decoded MP4 of a Full take of a Tae session will be).</summary>
        public TakeStartedEvent takeStarted = new TakeStartedEvent();
        /// <summary>A take's MP4 is complete (after StopTake, or when the session ends while recording): path, frames, bytes,
        /// duration, and for a Full take FullPath and FullBytes (the Wan-decoded MP4, sent once both files are written).</summary>
        public TakeSavedEvent takeSaved = new TakeSavedEvent();
        /// <summary>Every chunk, as it arrives (before its frames are shown): header, shot, timings. Its Pixels are not valid here.</summary>
        public ChunkReceivedEvent chunkReceived = new ChunkReceivedEvent();
        /// <summary>A cue's first chunk arrived this many milliseconds after the cue was sent (arrival measured on the network thread).</summary>
        public CueLatencyEvent cueLatency = new CueLatencyEvent();
        /// <summary>The snapshot <see cref="RequestSnapshot"/> asked for, all its parts put together: (bytes, next shot index).</summary>
        public SnapshotReadyEvent snapshotReady = new SnapshotReadyEvent();
        /// <summary>A session opened with <see cref="ContinueFromSnapshot"/> or <see cref="Fork"/> has its story (after sessionOpened):
        /// cues sent before this wait for it on the server.</summary>
        public SnapshotRestoredEvent restored = new SnapshotRestoredEvent();
        /// <summary>The cue log <see cref="RequestCueLog"/> asked for, its pages merged.</summary>
        public CueLogEvent cueLogReady = new CueLogEvent();
        /// <summary>Resume Story On Reconnect: the story moved to a new session after its server went away (raised after that session's
        /// <see cref="sessionOpened"/>): from the snapshot of its last shot boundary (FromSnapshot, NextShotIndex) or, without one yet, as a
        /// new story with the same caption and seed; Recued: the cues sent again, in order.</summary>
        public StoryResumedEvent storyResumed = new StoryResumedEvent();

        struct Pending
        {
            public int Run;          // the Connect() it came from: Close() drops what an ended run still delivers
            public int Connection;   // the connection it came from (acks go back on that one only)
            public ServerMessage Message;
            public byte[] Pixels;    // pooled copy of a chunk's pixels (null otherwise)
            public string Error;     // a failure to report (Message null)
            public string Ended;     // the session of Connection ended, and why (Message and Error null)
            public long Received;    // Stopwatch timestamp of a chunk's arrival
            public byte[] Snapshot;  // a whole snapshot (Message: its last part); with an Opened message: the snapshot it continues
            public bool Resuming;    // with Ended: the loop reconnects and the story resumes (ResumeStory)
            public bool GaveUp;      // with Error: the loop has ended without a session
            public bool SnapshotDropped;  // with Error: a snapshot that was asked for will not come
        }

        struct PendingAck { public ulong Seq; public long LastFrameIndex; public int Connection; }

        readonly ConcurrentQueue<Pending> inbox = new ConcurrentQueue<Pending>();
        readonly ConcurrentDictionary<int, ConcurrentBag<byte[]>> pixelPools = new ConcurrentDictionary<int, ConcurrentBag<byte[]>>();
        readonly Queue<PendingAck> acks = new Queue<PendingAck>();
        readonly List<ClientMessage> unsent = new List<ClientMessage>();  // cues and takes asked for before the session opened, in order
        readonly object connLock = new object();
        ShotStreamConnection connection;  // guarded by connLock, with liveConnection
        int liveConnection;               // id of `connection` (0: none); ids are never reused
        int connectionIds;
        int run;                          // written on the main thread only
        CancellationTokenSource cts;      // the running loop's; the loop disposes it when it ends
        Task loop;
        int cueCounter;
        // PlayShot's shots of this session, by event id, until they end on screen or fail; cut cues sent, by event id -> order.
        readonly Dictionary<string, ShotPlayback> playbacks = new Dictionary<string, ShotPlayback>();
        readonly Dictionary<string, long> cutOrders = new Dictionary<string, long>();
        long cueOrder;
        ShotStreamScreen hookedScreen;
        bool handedOver;                  // the chunk being dispatched went to the screen by reference (its buffer is the screen's)
        Action<byte[]> returnPixels;      // Return, allocated once
        readonly Dictionary<string, long> cueSentAt = new Dictionary<string, long>();  // event id -> Stopwatch timestamp, until its first chunk
        readonly float[] recentLatencies = new float[8];
        int latencyCount;
        UnityAction<ShotOnScreen> onScreenEnded, onScreenPresented;
        byte[] continueFrom;              // the snapshot every Connect (and reconnect) continues; null: a new story
        Fork forkNext;                    // the next Connect forks this session (one Connect only)
        long maxSnapshotBytes = SnapshotAssembler.DefaultMaxBytes;
        int snapshotPartBytes = SnapshotParts.MaxUploadPartBytes;
        CueLogCollector cueLog;           // the cue log being paged in (main thread); null: none asked for
        // Resume Story On Reconnect (main thread)
        readonly StoryRecord story = new StoryRecord();
        bool resumeRun;                   // this Connect's sessions resume the story
        int openedInRun;                  // sessions of this Connect opened so far
        string lastEnded;                 // why the last session ended
        readonly Queue<bool> snapshotAsks = new Queue<bool>();  // snapshot requests on their way, in order: true = the game's
        bool snapshotForGame;             // the game asked while an automatic request was on its way: that one is the game's too
        bool autoSnapshotAgain;           // a shot started while a request was on its way: ask once it is in
        bool cueLogAgain;                 // RequestCueLog was called while one was on its way

        /// <summary>Test seam: when set, outgoing messages go here instead of the network.</summary>
        internal Func<ClientMessage, Task> SendHook;
        /// <summary>Test seam: runs on the network thread once a connection is live, before its opened event is queued.</summary>
        internal Action AfterConnectForTest;

        public string ServerUrl { get { return serverUrl; } set { serverUrl = value; } }
        public string Token { get { return token; } set { token = value; } }
        public ShotTransport Transport { get { return transport; } set { transport = value; } }
        /// <summary>Time one attempt may take to connect and get the answer to open.</summary>
        public TimeSpan OpenTimeout
        {
            get { return TimeSpan.FromSeconds(openTimeoutSeconds > 0 ? openTimeoutSeconds : ShotStreamConnection.DefaultOpenTimeout.TotalSeconds); }
            set
            {
                if (value <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(value), "the open timeout must be positive");
                openTimeoutSeconds = (float)value.TotalSeconds;
            }
        }
        public string GlobalCaption { get { return globalCaption; } set { globalCaption = value; } }
        public ulong Seed { get { return unchecked((ulong)seed); } set { seed = unchecked((long)value); } }
        /// <summary>Chunks the server may send before they are acked (0 = server default).</summary>
        public int MaxChunksInFlight { get { return maxChunksInFlight; } set { maxChunksInFlight = Math.Max(0, value); } }
        /// <summary>The decoder the next session asks for (ServerDefault: the server's). The one the server chose is
        /// <see cref="Session"/>.Decoder once the session is open.</summary>
        public ShotDecoder Decoder { get { return decoder; } set { decoder = value; } }
        public ShotStreamScreen Screen { get { return screen; } set { screen = value; HookScreen(); } }

        /// <summary>Resume Story On Reconnect (default true): see the class summary and <see cref="storyResumed"/>. Takes effect at the
        /// next <see cref="Connect"/>.</summary>
        public bool ResumeStory { get { return resumeStory; } set { resumeStory = value; } }

        /// <summary>The latest story snapshot this client keeps for resuming (the snapshot of the last shot boundary; before the first
        /// one, the <see cref="ContinueFromSnapshot"/> bytes or null). In memory only: a game may save it (e.g. with
        /// <see cref="ShotStreamSnapshotFile"/>). Null when <see cref="ResumeStory"/> is off.</summary>
        public byte[] LastStorySnapshot { get { return story.Snapshot; } }

        /// <summary>The shot <see cref="LastStorySnapshot"/> continues with (-1: not known yet).</summary>
        public int LastStorySnapshotNextShot { get { return story.SnapshotNext; } }

        /// <summary>Test seam: cues the client remembers for resuming.</summary>
        internal int RememberedCues { get { return story.Count; } }

        /// <summary>A story snapshot (the bytes <see cref="snapshotReady"/> delivered, e.g. <see cref="ShotStreamSnapshotFile.Load(string)"/>)
        /// that every <see cref="Connect"/> continues instead of starting a new story, and so does every reconnect (with <see cref="ResumeStory"/>
        /// off the story starts over from the snapshot; on, a reconnect continues the story's latest snapshot, this one until there is another). Its caption, seed and decoder are the snapshot's (GlobalCaption, Seed and Decoder are not sent). The server
        /// answers <see cref="sessionOpened"/>, then <see cref="restored"/>; a snapshot it cannot continue ends the session with an
        /// <see cref="error"/> (damaged: code 3; another model or decoder: 9; too big: 8) and is not retried. Null (the default): new stories.
        /// Takes effect at the next Connect.</summary>
        public byte[] ContinueFromSnapshot
        {
            get { return continueFrom; }
            set
            {
                if (value != null && value.Length == 0) throw new ArgumentException("an empty snapshot: use the bytes snapshotReady delivered, unchanged", nameof(value));
                continueFrom = value;
            }
        }

        /// <summary>The largest snapshot this client puts together (default 256 MiB; a full-size story's is under 40 MiB): a larger
        /// one is refused with an <see cref="error"/> before its memory is taken.</summary>
        public long MaxSnapshotBytes
        {
            get { return maxSnapshotBytes; }
            set
            {
                if (value < 1 || value > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(value), value, "1 .. 2^31-1 bytes");
                maxSnapshotBytes = value;
            }
        }

        /// <summary>Test seam: the size of the parts a snapshot is sent in (at most 32 KiB, the default).</summary>
        internal int SnapshotPartBytes
        {
            get { return snapshotPartBytes; }
            set
            {
                if (value < 1 || value > SnapshotParts.MaxUploadPartBytes) throw new ArgumentOutOfRangeException(nameof(value));
                snapshotPartBytes = value;
            }
        }
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

        /// <summary>The open message this client sends (RGBA8 frames: what <see cref="ShotStreamScreen"/> shows).</summary>
        public OpenSession BuildOpen()
        {
            // a continued or forked story keeps its own caption, seed and decoder: none is sent (asking for another decoder
            // would be refused)
            bool ownStory = continueFrom == null && forkNext == null;
            return new OpenSession
            {
                ClientName = "unity",
                GlobalCaption = ownStory ? globalCaption ?? "" : "",
                Seed = ownStory ? Seed : 0,
                FrameFormat = FrameFormat.Rgba8,
                Transport = (Core.Transport)(int)transport,
                MaxChunksInFlight = (uint)Math.Max(0, maxChunksInFlight),
                Decoder = ownStory ? (FrameDecoder)(int)decoder : FrameDecoder.Unspecified,
                Fork = forkNext == null ? null : new Fork { SessionId = forkNext.SessionId, WaitForBoundary = forkNext.WaitForBoundary },
            };
        }

        void OnEnable()
        {
            HookScreen();
            if (connectOnStart) Connect();
        }

        void OnDisable() { Close(); }

        /// <summary>Starts the background connect/receive loop (no-op when already running).</summary>
        public void Connect()
        {
            if (IsRunning) return;
            if (Application.platform == RuntimePlatform.WebGLPlayer)
            {
                Report(WebGLNotSupported);
                return;
            }
            Uri uri;
            if (!Uri.TryCreate(serverUrl, UriKind.Absolute, out uri) || (uri.Scheme != "ws" && uri.Scheme != "wss"))
            {
                Report("ShotStreamClient: bad server URL \"" + serverUrl + "\" (expected ws://HOST:PORT/v1/direct)");
                return;
            }
            if (continueFrom != null && forkNext != null)
            {
                forkNext = null;
                Report("ShotStreamClient: a session either continues a snapshot or forks another session, not both: clear ContinueFromSnapshot to fork");
                return;
            }
            resumeRun = resumeStory;
            openedInRun = 0;
            snapshotAsks.Clear();
            snapshotForGame = autoSnapshotAgain = false;
            HashSet<string> waiting = new HashSet<string>();
            lock (unsent)
                foreach (var m in unsent)
                    if (m.Kind == ClientKind.Cue) waiting.Add(m.AsCue.EventId);
            story.Reset(resumeRun ? continueFrom : null, waiting);
            var source = new CancellationTokenSource();
            cts = source;
            int r = ++run;
            var open = BuildOpen();
            forkNext = null;  // one Connect only (its reconnects fork again)
            var policy = ReconnectPolicy;
            var timeout = OpenTimeout;
            string tok = token;
            var start = new SessionStart { Snapshot = continueFrom, PartBytes = snapshotPartBytes, MaxSnapshotBytes = maxSnapshotBytes };
            bool resume = resumeRun;
            loop = Task.Run(() => RunAsync(r, uri, tok, open, start, resume, policy, timeout, source));
        }

        // What a Connect's sessions start from, fixed when it is called.
        sealed class SessionStart { public byte[] Snapshot; public int PartBytes; public long MaxSnapshotBytes; }

        /// <summary>Connects a session that starts from another open session's story (on the same server; <see cref="SessionOpened.SessionId"/>,
        /// e.g. another client's <see cref="Session"/>), at its shot boundary: two endings of a player's choice from one story. Caption, seed
        /// and decoder are the other session's. <paramref name="waitForBoundary"/> false is refused (the session ends with an error) while
        /// that session is mid-shot; true waits for its shot to end. Answered by <see cref="sessionOpened"/>, then <see cref="restored"/>.
        /// This Connect only: a reconnect forks the other session again (its story as it is then); a later Connect starts a new story.</summary>
        public void Fork(string sessionId, bool waitForBoundary = true)
        {
            if (string.IsNullOrEmpty(sessionId)) throw new ArgumentException("fork needs the other session's id (SessionOpened.SessionId)", nameof(sessionId));
            if (IsRunning)
            {
                Report("ShotStreamClient: Fork(" + sessionId + ") while connected: Close() first (a client holds one session)");
                return;
            }
            forkNext = new Fork { SessionId = sessionId, WaitForBoundary = waitForBoundary };
            Connect();
        }

        /// <summary>What <see cref="Connect"/> reports on WebGL, where it does nothing.</summary>
        public const string WebGLNotSupported = "ShotStreamClient: WebGL is not supported yet: the client needs .NET's ClientWebSocket and a "
            + "thread for its network loop, which a WebGL player has neither of. Use the Editor or a standalone player (the Godot addon "
            + "does play in web builds).";

        /// <summary>True while the background connect/receive loop runs.</summary>
        public bool IsRunning { get { return loop != null && !loop.IsCompleted; } }

        // Owns `source` (disposes it when it ends). `failures` counts consecutive failed attempts and sessions that
        // ended before delivering a chunk, across reconnects: a server that accepts and drops every session is given
        // up on like one that refuses connections. The first failure of a streak is reported at once (so a client
        // that retries forever does not fail silently), the rest only when the client gives up.
        // `resume`: a session that ends because its server went away is followed by one that continues the story's latest snapshot
        // (the last whole one this loop received), or a new story with the same open message when there is none.
        async Task RunAsync(int runId, Uri uri, string tok, OpenSession open, SessionStart start, bool resume, ReconnectPolicy policy, TimeSpan timeout, CancellationTokenSource source)
        {
            var ct = source.Token;
            byte[] latest = start.Snapshot;
            int failures = 0;
            bool streakReported = false;
            string lastFailure = null;
            try
            {
                while (true)
                {
                    ShotStreamConnection conn = null;
                    RingReader ring = null;
                    int id = 0;
                    try
                    {
                        if (latest != start.Snapshot)
                        {
                            // the story's own snapshot: its caption, seed and decoder are the snapshot's, and it forks nothing
                            open.GlobalCaption = "";
                            open.Seed = 0;
                            open.Decoder = FrameDecoder.Unspecified;
                            open.Fork = null;
                        }
                        byte[] from = latest;
                        conn = await ShotStreamConnection.ConnectAndOpenFromSnapshotAsync(uri, tok, open, from, timeout, ct, start.PartBytes).ConfigureAwait(false);
                        var layout = conn.Session.Ring;
                        if (layout != null)
                        {
                            string why = null;
                            try { ring = new RingReader(layout.Path, (int)layout.SlotCount, (long)layout.SlotBytes, (int)layout.HeaderBytes, (int)layout.SlotHeaderBytes); }
                            catch (Exception e) { why = "cannot map the shared-memory ring " + layout.Path + " (" + e.Message + ")"; }
                            if (why != null)
                            {
                                if (open.Transport == Core.Transport.Inline)
                                {
                                    Enqueue(runId, 0, "ShotStreamClient: the server sent a shared-memory ring to an inline session and it " + why);
                                    return;
                                }
                                // A setup error, not a network one: every retry would open a server session whose ring
                                // this process cannot map either. End this one and ask for inline frames instead
                                // (`open` is this loop's own copy).
                                Enqueue(runId, 0, "ShotStreamClient: " + why + ": shared memory needs the client and the server on the same host, "
                                    + "run by the same user; using Inline instead");
                                open.Transport = Core.Transport.Inline;
                                await conn.CloseAsync(ct).ConfigureAwait(false);
                                continue;
                            }
                        }
                        id = Interlocked.Increment(ref connectionIds);
                        lock (connLock)
                        {
                            if (ct.IsCancellationRequested || runId != Volatile.Read(ref run)) return;  // closed meanwhile
                            connection = conn;
                            liveConnection = id;
                        }
                        streakReported = false;
                        if (AfterConnectForTest != null) AfterConnectForTest();
                        inbox.Enqueue(new Pending { Run = runId, Connection = id, Message = new ServerMessage(ServerKind.Opened, conn.Session), Snapshot = from });
                        string reason = null;
                        bool unsaid = false;  // the server closed the connection without a `closed`
                        var snapshot = new SnapshotAssembler(start.MaxSnapshotBytes);
                        while (reason == null)
                        {
                            ServerMessage m = await conn.ReceiveAsync(ct).ConfigureAwait(false);
                            if (m == null) { reason = "the server closed the connection"; unsaid = true; }
                            else if (m.Kind == ServerKind.Closed) reason = m.Closed.Reason;
                            else if (m.Kind == ServerKind.Snapshot)
                            {
                                // put together here, off the main thread; the main thread gets the whole snapshot once
                                byte[] whole = null;
                                try { whole = snapshot.Add(m.Snapshot); }
                                catch (System.IO.InvalidDataException e)
                                {
                                    inbox.Enqueue(new Pending { Run = runId, Connection = id, Error = "ShotStreamClient: snapshot dropped: " + e.Message, SnapshotDropped = true });
                                }
                                if (whole != null && resume) latest = whole;
                                if (whole != null) inbox.Enqueue(new Pending { Run = runId, Connection = id, Message = m, Snapshot = whole });
                            }
                            else
                            {
                                byte[] pixels = null;
                                if (m.Kind == ServerKind.Chunk)
                                {
                                    failures = 0;  // the session works: a later drop starts the count over
                                    pixels = CopyPixels(runId, id, m.Chunk, ring);
                                }
                                inbox.Enqueue(new Pending { Run = runId, Connection = id, Message = m, Pixels = pixels, Received = Stopwatch.GetTimestamp() });
                            }
                        }
                        // A restart: the server will be back. With `resume`, a draining server or one that closes without saying why
                        // has gone away too: the story moves on (behind a proxy, to another server). Anything else ("client", ...) ended
                        // the session on purpose.
                        bool gone = reason == "server shutdown" || resume && (reason == "server draining" || unsaid);
                        inbox.Enqueue(new Pending { Run = runId, Connection = id, Ended = reason, Resuming = gone && resume });
                        if (!gone) return;
                        lastFailure = reason == "server shutdown" ? "the server shut down" : reason == "server draining" ? "the server is draining" : reason;
                    }
                    catch (Exception) when (ct.IsCancellationRequested) { return; }  // Close(): whatever failed, failed because of it
                    catch (Exception e)
                    {
                        bool transient = ReconnectPolicy.IsTransient(e);
                        if (id != 0) inbox.Enqueue(new Pending { Run = runId, Connection = id, Ended = (transient ? "connection lost: " : "error: ") + e.Message, Resuming = transient && resume });
                        if (!transient)
                        {
                            // A refused handshake, a server error, a malformed message, a bug: another attempt would
                            // fail the same way.
                            inbox.Enqueue(new Pending { Run = runId, Error = "ShotStreamClient: " + e.Message, GaveUp = true });
                            return;
                        }
                        lastFailure = e.Message;
                    }
                    finally
                    {
                        lock (connLock)
                        {
                            if (conn != null && connection == conn) { connection = null; liveConnection = 0; }
                        }
                        if (ring != null) ring.Dispose();
                        if (conn != null) conn.Dispose();
                    }
                    if (runId != Volatile.Read(ref run)) return;  // closed while `close` was going out
                    if (!policy.ShouldRetry(failures))
                    {
                        inbox.Enqueue(new Pending { Run = runId, Error = "ShotStreamClient: gave up after " + (failures + 1) + (failures == 0 ? " failure: " : " failures in a row: ") + lastFailure, GaveUp = true });
                        return;
                    }
                    if (!streakReported)
                    {
                        Enqueue(runId, 0, "ShotStreamClient: " + lastFailure + " (retrying)");
                        streakReported = true;
                    }
                    await Task.Delay(policy.DelayFor(failures), ct).ConfigureAwait(false);
                    failures++;
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested) { }
            finally { source.Dispose(); }
        }

        void Enqueue(int runId, int connectionId, string error)
        {
            inbox.Enqueue(new Pending { Run = runId, Connection = connectionId, Error = error });
        }

        byte[] CopyPixels(int runId, int connectionId, FrameChunk chunk, RingReader ring)
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
                Enqueue(runId, connectionId, "ShotStreamClient: chunk " + chunk.ChunkSeq + " lost in the shared-memory ring (" + status
                    + ", seq_begin " + ring.LastSeqBegin + ", seq_end " + ring.LastSeqEnd + ")");
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

        /// <summary>Test seam: hands a server event to the main-thread queue as the receive loop would, as if from
        /// the live connection (<paramref name="pixels"/>: the chunk's pixel copy, returned to the pool after dispatch).</summary>
        internal void Deliver(ServerMessage message, byte[] pixels = null)
        {
            if (message == null) throw new ArgumentNullException(nameof(message));
            int id;
            lock (connLock) id = liveConnection;
            inbox.Enqueue(new Pending { Run = run, Connection = id, Message = message, Pixels = pixels, Received = Stopwatch.GetTimestamp() });
        }

        void Update() { Pump(Time.realtimeSinceStartupAsDouble); }

        /// <summary>Main thread: dispatch queued events, feed the screen, send due acks.</summary>
        internal void Pump(double nowSeconds)
        {
            HookScreen();
            if (returnPixels == null) returnPixels = Return;
            Pending p;
            while (inbox.TryDequeue(out p))
            {
                try
                {
                    if (p.Run != run) continue;  // from a loop Close() ended
                    handedOver = false;
                    if (p.Message != null) Dispatch(p, nowSeconds);
                    else if (p.Ended != null) SessionEnded(p.Ended, p.Resuming);
                    else
                    {
                        if (p.SnapshotDropped) SnapshotAnswered();
                        Report(p.Error);
                        if (p.GaveUp) FailAllPlaybacks("the client gave up reconnecting");
                    }
                }
                catch (Exception e) { Debug.LogException(e); }
                finally { if (!handedOver) Return(p.Pixels); }
            }
            bool waitForScreen = screen != null && screen.isActiveAndEnabled;
            while (acks.Count > 0)
            {
                var a = acks.Peek();
                if (waitForScreen && a.LastFrameIndex >= 0 && screen.PresentedFrameIndex < a.LastFrameIndex) break;
                acks.Dequeue();
                SendAck(a);
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
                    cueLog = null;  // a page of the old session's log will not come
                    cutOrders.Clear();
                    cueSentAt.Clear();
                    pixelPools.Clear();
                    snapshotAsks.Clear();  // the old session's will not come
                    snapshotForGame = autoSnapshotAgain = false;
                    bool resuming = resumeRun && openedInRun++ > 0;
                    // Queued cues go out before any user code runs: a throwing screen or listener must not strand them.
                    ClientMessage[] toSend;
                    lock (unsent)
                    {
                        // resuming, the story's record cues them again itself, in order
                        if (resuming) unsent.RemoveAll(c => c.Kind == ClientKind.Cue);
                        toSend = unsent.ToArray();
                        unsent.Clear();
                    }
                    StoryResumed moved = resuming ? ResumeStoryNow(p.Snapshot != null) : null;
                    foreach (var c in toSend)
                    {
                        if (c.Kind == ClientKind.Snapshot) snapshotAsks.Enqueue(true);
                        Send(c);
                    }
                    if (Paused) Send(ClientMessage.Pause());  // a new session starts generating: keep it paused
                    if (screen != null)
                    {
                        try { screen.OnSessionOpened(Session); }
                        catch (Exception e) { Report("ShotStreamClient: the screen cannot show this session: " + e.Message); }
                    }
                    Raise(sessionOpened, Session);
                    if (moved != null) Raise(storyResumed, moved);
                    break;
                case ServerKind.ShotStarted:
                    OnShotStarted(m.ShotStarted.EventId);
                    if (resumeRun) OnStoryShotStarted(m.ShotStarted);
                    Raise(shotStarted, m.ShotStarted);
                    break;
                case ServerKind.ShotFinished:
                    if (resumeRun) story.Finished(m.ShotFinished.EventId, m.ShotFinished.ShotIndex, m.ShotFinished.Chunks);
                    Raise(shotFinished, m.ShotFinished);
                    // nothing will show it: done when the server is
                    if (!ScreenActive) FinishPlayback(m.ShotFinished.EventId, new ShotOnScreen { EventId = m.ShotFinished.EventId, ShotIndex = m.ShotFinished.ShotIndex, FirstFrame = -1 });
                    break;
                case ServerKind.TakeStarted: Raise(takeStarted, m.TakeStarted); break;
                case ServerKind.TakeSaved: Raise(takeSaved, m.TakeSaved); break;
                case ServerKind.Snapshot:
                    if (p.Snapshot != null)
                    {
                        if (resumeRun) story.Kept(p.Snapshot, (int)m.Snapshot.NextShotIndex);
                        if (SnapshotAnswered()) Raise(snapshotReady, p.Snapshot, (int)m.Snapshot.NextShotIndex);
                    }
                    break;
                case ServerKind.Restored:
                    if (resumeRun) story.Restored((int)m.Restored.NextShotIndex);
                    Raise(restored, m.Restored);
                    break;
                case ServerKind.CueLog: OnCueLogPage(m.CueLog); break;
                case ServerKind.Error:
                    // a refused snapshot request (one on its way already, mid-shot, too big) answers the oldest
                    if (string.IsNullOrEmpty(m.Error.EventId) && snapshotAsks.Count > 0 && (m.Error.Message ?? "").IndexOf("snapshot", StringComparison.OrdinalIgnoreCase) >= 0)
                        SnapshotAnswered();
                    Report("ShotStream server error " + m.Error.Code + ": " + m.Error.Message);
                    FailPlayback(m.Error.EventId, "the server rejected the cue: " + m.Error.Message);
                    Raise(serverError, m.Error);
                    break;
                case ServerKind.Chunk:
                    var chunk = m.Chunk;
                    long last = -1;  // -1: nothing to wait for, ack at once
                    if (screen != null && screen.isActiveAndEnabled && p.Pixels != null)
                    {
                        if (chunk.Width != screen.Width || chunk.Height != screen.Height)
                        {
                            // Configure drops the queued frames and restarts the frame numbering the pending acks wait on.
                            while (acks.Count > 0) SendAck(acks.Dequeue());
                            screen.Configure((int)chunk.Width, (int)chunk.Height);
                        }
                        // by reference: the screen hands the buffer back to the pool once the chunk's frames have left it
                        int accepted = screen.PushChunk(p.Pixels, 0, (int)chunk.NumFrames, now, returnPixels, chunk.EventId ?? "", chunk.ShotIndex, chunk.LastInShot);
                        if (accepted > 0) handedOver = true;  // even if something below throws
                        if (accepted < chunk.NumFrames)
                            Debug.LogWarning("ShotStreamClient: screen buffer full, dropped " + (chunk.NumFrames - accepted) + " frames of chunk " + chunk.ChunkSeq);
                        if (accepted > 0) last = screen.PushedFrames - 1;
                    }
                    acks.Enqueue(new PendingAck { Seq = chunk.ChunkSeq, LastFrameIndex = last, Connection = p.Connection });
                    long sentAt;
                    if (!string.IsNullOrEmpty(chunk.EventId) && cueSentAt.TryGetValue(chunk.EventId, out sentAt))
                    {
                        cueSentAt.Remove(chunk.EventId);
                        float ms = (float)((p.Received - sentAt) * 1000.0 / Stopwatch.Frequency);
                        recentLatencies[latencyCount++ % recentLatencies.Length] = ms;
                        LastCueLatencyMs = ms;
                        Raise(cueLatency, chunk.EventId, ms);
                    }
                    Raise(chunkReceived, chunk);
                    break;
            }
        }

        void EndSession(string reason) { SessionEnded(reason, false); }

        void SessionEnded(string reason, bool resuming)
        {
            Session = null;
            acks.Clear();  // their connection is gone
            cueLog = null;
            lastEnded = reason;
            // resuming: the shots cued again go on in the next session (the rest fail then)
            if (!resuming) FailAllPlaybacks("the session ended (" + reason + ")");
            Raise(sessionClosed, reason);
        }

        // Resume Story On Reconnect: a new session of this Connect opened after the old one's server went away.
        StoryResumed ResumeStoryNow(bool fromSnapshot)
        {
            List<StoryRecord.Entry> recued;
            var now = story.Resume(fromSnapshot, out recued);
            var ids = new HashSet<string>();
            foreach (var e in recued) ids.Add(e.Cue.EventId);
            // PlayShot's shots not cued again: one the server had started was made (its frames still queued on the screen went with
            // the old session: done as when there is no screen); one it had not, did not play
            var gone = new List<ShotPlayback>();
            foreach (var pb in playbacks.Values) if (!ids.Contains(pb.EventId)) gone.Add(pb);
            foreach (var pb in gone)
            {
                playbacks.Remove(pb.EventId);
                if (pb.Started) pb.Complete(new ShotOnScreen { EventId = pb.EventId, FirstFrame = -1 });
                else pb.Fail("the session ended (" + lastEnded + ") and the story resumed without this shot");
            }
            foreach (var e in now) Resend(e);
            var ev = new StoryResumed
            {
                SessionId = Session != null ? Session.SessionId : "",
                Reason = lastEnded ?? "",
                FromSnapshot = fromSnapshot,
                NextShotIndex = fromSnapshot ? Math.Max(0, story.SnapshotNext) : 0,
                Recued = new string[recued.Count],
            };
            for (int i = 0; i < recued.Count; i++) ev.Recued[i] = recued[i].Cue.EventId;
            return ev;
        }

        void Resend(StoryRecord.Entry e)
        {
            if (e.Cue.Mode == CueMode.Cut) cutOrders[e.Cue.EventId] = e.Order;
            Send(ClientMessage.CueMessage(StoryRecord.Copy(e.Cue)));
        }

        void OnStoryShotStarted(ShotStarted s)
        {
            foreach (var e in story.Started(s.EventId, s.ShotIndex)) Resend(e);
            // the state at this shot's end, before the next starts: where a resumed story continues from
            if (snapshotAsks.Count > 0) autoSnapshotAgain = true;
            else AskSnapshot(false, true);
        }

        void AskSnapshot(bool forGame, bool waitForBoundary)
        {
            snapshotAsks.Enqueue(forGame);
            Send(ClientMessage.SnapshotMessage(waitForBoundary));
        }

        // The oldest snapshot request is answered (its snapshot is in, dropped or refused); true when the game asked for it.
        bool SnapshotAnswered()
        {
            bool forGame = snapshotAsks.Count > 0 ? snapshotAsks.Dequeue() : true;  // none on its way: not this client's asking
            if (snapshotForGame && snapshotAsks.Count == 0) { forGame = true; snapshotForGame = false; }
            if (autoSnapshotAgain && snapshotAsks.Count == 0 && Session != null)
            {
                autoSnapshotAgain = false;
                AskSnapshot(false, true);
            }
            return forGame;
        }

        bool ScreenActive { get { return screen != null && screen.isActiveAndEnabled; } }

        // The client follows its screen's on-screen events (the screen may be swapped at any time).
        void HookScreen()
        {
            if (hookedScreen == screen) return;
            if (onScreenEnded == null)
            {
                onScreenEnded = s => { FinishPlayback(s.EventId, s); Raise(shotEnded, s); };
                onScreenPresented = s =>
                {
                    ShotPlayback pb;
                    if (s.EventId != null && playbacks.TryGetValue(s.EventId, out pb)) pb.Presented = true;
                    Raise(shotPresented, s);
                };
            }
            if (hookedScreen != null)
            {
                hookedScreen.shotEnded.RemoveListener(onScreenEnded);
                hookedScreen.shotPresented.RemoveListener(onScreenPresented);
                if (hookedScreen.Client == this) hookedScreen.Client = null;
            }
            hookedScreen = screen;
            if (screen != null)
            {
                screen.shotEnded.AddListener(onScreenEnded);
                screen.shotPresented.AddListener(onScreenPresented);
                screen.Client = this;
            }
        }

        void OnShotStarted(string eventId)
        {
            ShotPlayback pb;
            if (!string.IsNullOrEmpty(eventId) && playbacks.TryGetValue(eventId, out pb)) pb.Started = true;
            long cut;
            if (string.IsNullOrEmpty(eventId) || !cutOrders.TryGetValue(eventId, out cut)) return;
            cutOrders.Remove(eventId);
            // The server handles cues in order: once a cut shot starts, every cue sent before it has started or was dropped.
            List<ShotPlayback> dropped = null;
            foreach (var other in playbacks.Values)
                if (other.Order < cut && !other.Started) (dropped ?? (dropped = new List<ShotPlayback>())).Add(other);
            if (dropped == null) return;
            foreach (var d in dropped) { playbacks.Remove(d.EventId); d.Fail("a later cut dropped it before it started"); }
        }

        void FinishPlayback(string eventId, ShotOnScreen shot)
        {
            ShotPlayback pb;
            if (string.IsNullOrEmpty(eventId) || !playbacks.TryGetValue(eventId, out pb)) return;
            playbacks.Remove(eventId);
            pb.Complete(shot);
        }

        void FailPlayback(string eventId, string why)
        {
            ShotPlayback pb;
            if (string.IsNullOrEmpty(eventId) || !playbacks.TryGetValue(eventId, out pb)) return;
            playbacks.Remove(eventId);
            pb.Fail(why);
        }

        void FailAllPlaybacks(string why, HashSet<string> except = null)
        {
            if (playbacks.Count == 0) return;
            var failing = new List<ShotPlayback>();
            foreach (var pb in playbacks.Values) if (except == null || !except.Contains(pb.EventId)) failing.Add(pb);
            foreach (var pb in failing) { playbacks.Remove(pb.EventId); pb.Fail(why); }
        }

        /// <summary>Builds the cue message for a prompt (event id "unity-N", mode cut or wait).</summary>
        internal Cue BuildCue(string prompt, int chunks, bool cut, params string[] tags) { return BuildCue(prompt, chunks, cut, 0, tags); }

        internal Cue BuildCue(string prompt, int chunks, bool cut, int atChunk, params string[] tags)
        {
            if (string.IsNullOrEmpty(prompt)) throw new ArgumentException("a cue needs a prompt", nameof(prompt));
            if (chunks < 0) throw new ArgumentOutOfRangeException(nameof(chunks), "chunks must be >= 0 (0 = server default)");
            if (atChunk < 0) throw new ArgumentOutOfRangeException(nameof(atChunk), "atChunk must be >= 0 (0 = the next chunk boundary)");
            if (atChunk > 0 && !cut) throw new ArgumentException("atChunk applies to cuts (a wait cue starts when the shot ends)", nameof(atChunk));
            var cue = new Cue
            {
                EventId = "unity-" + Interlocked.Increment(ref cueCounter).ToString(CultureInfo.InvariantCulture),
                Prompt = prompt,
                NumChunks = (uint)chunks,
                Mode = cut ? CueMode.Cut : CueMode.Wait,
                AtChunk = (uint)atChunk,
            };
            if (tags != null) foreach (var t in tags) if (!string.IsNullOrEmpty(t)) cue.Tags.Add(t);
            return cue;
        }

        /// <summary>Queues a shot: sent now when connected, else once the session opens. Returns its event id.
        /// A cut ends the current shot at its next chunk boundary; frames already queued on the screen still play.</summary>
        public string Cue(string prompt, int chunks = 0, bool cut = false, params string[] tags)
        {
            return SendCue(BuildCue(prompt, chunks, cut, tags));
        }

        /// <summary>Cues a shot that cuts the shot in progress once that shot has made <paramref name="atChunk"/> chunks (1..7; 0 = at its
        /// next chunk boundary, like <c>Cue(prompt, chunks, cut: true)</c>). Where a cut lands then no longer depends on when the cue
        /// arrives (unless it arrives after that chunk: then it cuts at the next boundary); the cue log says where every cut landed.
        /// Returns its event id.</summary>
        public string CueCutAt(string prompt, int atChunk, int chunks = 0, params string[] tags)
        {
            return SendCue(BuildCue(prompt, chunks, true, atChunk, tags));
        }

        /// <summary>Cues a shot like <see cref="Cue"/> and returns it as a <see cref="ShotPlayback"/>, which completes once
        /// the shot has ended on screen: <c>yield return client.PlayShot(...)</c> in a coroutine, or
        /// <c>await client.PlayShot(...)</c>. Without an active screen it completes when the server finishes the shot.</summary>
        public ShotPlayback PlayShot(string prompt, int chunks = 0, bool cut = false, params string[] tags)
        {
            return PlayCue(BuildCue(prompt, chunks, cut, tags));
        }

        /// <summary>Cues a shot like <see cref="CueCutAt"/> (a cut that lands once the shot in progress has made
        /// <paramref name="atChunk"/> chunks) and returns it as a <see cref="ShotPlayback"/>, like <see cref="PlayShot"/>.</summary>
        public ShotPlayback PlayShotCutAt(string prompt, int atChunk, int chunks = 0, params string[] tags)
        {
            return PlayCue(BuildCue(prompt, chunks, true, atChunk, tags));
        }

        ShotPlayback PlayCue(Cue cue)
        {
            var pb = new ShotPlayback(cue.EventId, cue.Mode == CueMode.Cut, cueOrder + 1);
            playbacks[cue.EventId] = pb;
            SendCue(cue);
            return pb;
        }

        string SendCue(Cue cue)
        {
            long order = ++cueOrder;
            // resuming: a cut (and what follows it) waits until the replayed shot has started, or it would drop that shot
            if (resumeStory && !story.Cued(cue, order)) return cue.EventId;
            if (cue.Mode == CueMode.Cut) cutOrders[cue.EventId] = order;
            SendOrQueue(ClientMessage.CueMessage(cue));
            return cue.EventId;
        }

        /// <summary>Records the frames of every later chunk into an MP4 on the server's host (`serve --takes-dir`);
        /// sent now when connected, else once the session opens (so a take can cover the first shot).
        /// <paramref name="name"/>: 1-64 of A-Z a-z 0-9 - _ . without ".mp4"; "" lets the server name it.
        /// Answered by <see cref="takeStarted"/>, or <see cref="error"/> (already recording, bad name).</summary>
        public void StartTake(string name = "") { SendOrQueue(ClientMessage.StartTakeMessage(name)); }

        /// <summary><see cref="StartTake(string)"/> at a <paramref name="quality"/>: Live (the default) records the frames as the
        /// session sees them; Full also re-decodes the recorded shots with the Wan VAE once the take stops (worth it with a Tae
        /// session), and <see cref="takeSaved"/> then carries FullPath and FullBytes. <see cref="takeStarted"/> says which
        /// quality the server granted. Live is sent as the proto default (left out), which older servers accept too.</summary>
        public void StartTake(string name, TakeQuality quality)
        {
            SendOrQueue(ClientMessage.StartTakeMessage(name, quality == TakeQuality.Live ? TakeQuality.Unspecified : quality));
        }

        /// <summary>Asks for the story's snapshot: what a game save keeps to continue the story later (<see cref="ContinueFromSnapshot"/>)
        /// exactly as it would have gone on. <paramref name="waitForBoundary"/> true (the default): taken when the shot in progress ends
        /// (or its cut lands), before the next queued shot starts; false: refused while a shot is in progress (a non-fatal
        /// <see cref="serverError"/>, code 9). Sent now when connected, else once the session opens (a session continuing a snapshot or
        /// forking another: ask after <see cref="restored"/>). The parts are put together off the main thread; <see cref="snapshotReady"/>
        /// then delivers the bytes (at most <see cref="MaxSnapshotBytes"/>, else an <see cref="error"/>).</summary>
        /// <para>With <see cref="ResumeStory"/> on, the client asks for a snapshot itself as every shot starts (kept as
        /// <see cref="LastStorySnapshot"/>, not raised as snapshotReady); a request while one of those is on its way is answered by it
        /// (the snapshot of the same boundary), so the server never refuses it as one too many.</para>
        public void RequestSnapshot(bool waitForBoundary = true)
        {
            bool connected;
            lock (connLock) connected = connection != null && Session != null;
            if (resumeRun && snapshotAsks.Count > 0 && (connected || SendHook != null))
            {
                snapshotForGame = true;
                return;
            }
            if (SendHook != null || connected) AskSnapshot(true, waitForBoundary);
            else lock (unsent) unsent.Add(ClientMessage.SnapshotMessage(waitForBoundary));
        }

        /// <summary>Asks for the session's cue log: every cue that became a shot and the chunks it made (where each cut landed), enough to
        /// replay the session exactly (RenderStory's cue_log, `shotstream story --cue-log`). The pages of a long log are asked for in turn;
        /// <see cref="cueLogReady"/> delivers them merged. Sent now when connected, else once the session opens.</summary>
        public void RequestCueLog()
        {
            if (cueLog != null) { cueLogAgain = true; return; }  // one on its way: ask again once it is in, for the log as it is then
            cueLog = new CueLogCollector();
            SendOrQueue(ClientMessage.CueLogMessage(0));
        }

        void OnCueLogPage(CueLog page)
        {
            if (cueLog == null) cueLog = new CueLogCollector();  // not asked for by this client: still a log
            uint? next;
            try { next = cueLog.Add(page); }
            catch (System.IO.InvalidDataException e)
            {
                cueLog = null;
                Report("ShotStreamClient: cue log dropped: " + e.Message);
                return;
            }
            if (next.HasValue)
            {
                Send(ClientMessage.CueLogMessage(next.Value));
                return;
            }
            var log = cueLog.Log;
            cueLog = null;
            Raise(cueLogReady, log);
            if (cueLogAgain)
            {
                cueLogAgain = false;
                RequestCueLog();
            }
        }

        /// <summary>True between <see cref="Pause"/> and <see cref="Resume"/>.</summary>
        public bool Paused { get; private set; }

        /// <summary>Pauses the shot: the server stops generating after the chunk in progress (the GPU idles) and the
        /// screen holds its frame; nothing is dropped. A session opened while paused is paused at once.</summary>
        public void Pause()
        {
            Paused = true;
            if (screen != null) screen.Pause();
            SendIfOpen(ClientMessage.Pause());
        }

        /// <summary>Plays on: the screen from the frame it holds, the server generating again.</summary>
        public void Resume()
        {
            Paused = false;
            if (screen != null) screen.Resume();
            SendIfOpen(ClientMessage.Resume());
        }

        /// <summary>Milliseconds from the latest cue to its first chunk (-1 before any).</summary>
        public float LastCueLatencyMs { get; private set; } = -1f;

        /// <summary>The longest of the last 8 cue latencies, in milliseconds (-1 before any): a conservative lead time
        /// for cueing a shot ahead of when it must be on screen.</summary>
        public float RecentMaxCueLatencyMs
        {
            get
            {
                if (latencyCount == 0) return -1f;
                float max = 0;
                for (int i = 0; i < Math.Min(latencyCount, recentLatencies.Length); i++) max = Math.Max(max, recentLatencies[i]);
                return max;
            }
        }

        void SendIfOpen(ClientMessage msg)
        {
            bool connected;
            lock (connLock) connected = connection != null && Session != null;
            if (SendHook != null || connected) Send(msg);
        }

        /// <summary>Finishes the take; answered by <see cref="takeSaved"/> with the MP4's path, frames and size.</summary>
        public void StopTake() { SendOrQueue(ClientMessage.StopTakeMessage()); }

        void SendOrQueue(ClientMessage msg)
        {
            bool connected;
            lock (connLock) connected = connection != null && Session != null;
            if (SendHook != null || connected) Send(msg);
            else lock (unsent) unsent.Add(msg);
        }

        // An ack belongs to the connection its chunk came from: after a reconnect the new session numbers its
        // chunks afresh, so an old ack would credit (or be rejected by) the wrong session.
        void SendAck(PendingAck a)
        {
            lock (connLock) { if (a.Connection != liveConnection) return; }
            Send(ClientMessage.AckMessage(a.Seq));
        }

        void Send(ClientMessage msg)
        {
            if (msg.Kind == ClientKind.Cue) cueSentAt[msg.AsCue.EventId] = Stopwatch.GetTimestamp();
            Task t;
            if (SendHook != null) t = SendHook(msg);
            else
            {
                ShotStreamConnection conn;
                lock (connLock) conn = connection;
                if (conn == null) return;
                t = conn.SendAsync(msg);
            }
            int r = run;
            t.ContinueWith(x => Enqueue(r, 0, "ShotStreamClient: sending " + msg.Kind + " failed: " + x.Exception.GetBaseException().Message),
                           TaskContinuationOptions.OnlyOnFaulted);
        }

        void Report(string message)
        {
            if (string.IsNullOrEmpty(message)) return;
            Debug.LogWarning(message);
            Raise(error, message);
        }

        // A listener's exception is logged and goes no further: it must not cost the events queued after it.
        static void Raise<T>(UnityEvent<T> e, T arg)
        {
            try { e.Invoke(arg); }
            catch (Exception x) { Debug.LogException(x); }
        }

        static void Raise<T0, T1>(UnityEvent<T0, T1> e, T0 a, T1 b)
        {
            try { e.Invoke(a, b); }
            catch (Exception x) { Debug.LogException(x); }
        }

        /// <summary>Ends the session without blocking: sends `close`, drops whatever the loop still delivers, and stops
        /// the loop once `close` is out (at most <see cref="CloseGrace"/> later: cancelling aborts the socket, which
        /// would cut the message off). A take still recording is finished by the service all the same, but no
        /// takeSaved is raised for it: StopTake first to get its path. Cues queued while not connected stay queued
        /// for the next <see cref="Connect"/>.</summary>
        public void Close()
        {
            ShotStreamConnection conn;
            lock (connLock) { conn = connection; connection = null; liveConnection = 0; }
            run++;  // the loop checks it too: it installs no other connection from now on
            var source = cts;
            cts = null;
            if (source != null)
            {
                if (conn != null)
                {
                    TryCancel(source, CloseGrace);
                    conn.SendAsync(ClientMessage.Close()).ContinueWith(t => TryCancel(source, TimeSpan.Zero));
                }
                else TryCancel(source, TimeSpan.Zero);
            }
            loop = null;
            Session = null;
            acks.Clear();
            cueLog = null;
            cueLogAgain = false;
            // a cue still waiting for a session stays queued for the next Connect, and so does its playback
            HashSet<string> waiting = null;
            lock (unsent)
                foreach (var m in unsent)
                    if (m.Kind == ClientKind.Cue) (waiting ?? (waiting = new HashSet<string>())).Add(m.AsCue.EventId);
            FailAllPlaybacks("the client closed", waiting);
        }

        /// <summary>The longest a closed session's loop waits for its `close` message to go out.</summary>
        public static readonly TimeSpan CloseGrace = TimeSpan.FromSeconds(1);

        static void TryCancel(CancellationTokenSource source, TimeSpan after)
        {
            try
            {
                if (after > TimeSpan.Zero) source.CancelAfter(after);
                else source.Cancel();
            }
            catch (ObjectDisposedException) { }  // the loop has ended (and disposed it)
        }
    }
}
