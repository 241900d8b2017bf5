// Game events -> shots: resolves an event through a ShotPromptMap and cues it on a ShotStreamClient, and reports
// the shot's progress back under the game event's name.
using System;
using System.Collections.Generic;
using ShotStream.Core;
using UnityEngine;
using UnityEngine.Events;

namespace ShotStream.Unity
{
    /// <summary>A game event's shot started or finished; the argument is the game event name given to Fire.</summary>
    [Serializable] public sealed class GameEventShotEvent : UnityEvent<string> { }
    /// <summary>A game event could not become a shot: (game event name, why). Raised when FireEvent cannot resolve
    /// the event, and when the server rejects its cue.</summary>
    [Serializable] public sealed class GameEventErrorEvent : UnityEvent<string, string> { }

    [AddComponentMenu("ShotStream/ShotStream Director")]
    public sealed class ShotStreamDirector : MonoBehaviour
    {
        [SerializeField] ShotStreamClient client = null;
        [SerializeField] ShotPromptMap promptMap = null;
        [Tooltip("Tag each cue with its game event name")]
        [SerializeField] bool tagWithEventName = true;

        /// <summary>The server started the game event's shot.</summary>
        [Header("Events (argument: the game event name)")]
        public GameEventShotEvent shotStarted = new GameEventShotEvent();
        /// <summary>The server finished the game event's shot (its last frames may still be on their way to the screen).</summary>
        public GameEventShotEvent shotFinished = new GameEventShotEvent();
        /// <summary>The shot's first frame is on screen.</summary>
        public GameEventShotEvent shotPresented = new GameEventShotEvent();
        /// <summary>The shot has ended on screen (its last frame shown for its full time): where a cutscene goes on.</summary>
        public GameEventShotEvent shotEnded = new GameEventShotEvent();
        public GameEventErrorEvent error = new GameEventErrorEvent();

        // Cue event id -> game event name, for the cues of the current session. Emptied when the session ends:
        // the server forgets its cues then, and a cut drops queued cues without a shotFinished.
        readonly Dictionary<string, string> gameEvents = new Dictionary<string, string>();
        UnityAction<ShotStarted> onShotStarted;
        UnityAction<ShotFinished> onShotFinished;
        UnityAction<ServerError> onServerError;
        UnityAction<string> onSessionClosed;
        UnityAction<ShotOnScreen> onPresented, onEnded;
        ShotStreamClient listeningTo;

        public ShotStreamClient Client
        {
            get { return client; }
            set
            {
                client = value;
                if (isActiveAndEnabled) Listen();
            }
        }
        public ShotPromptMap PromptMap { get { return promptMap; } set { promptMap = value; } }

        void OnEnable() { Listen(); }

        void OnDisable() { Unlisten(); }

        void Listen()
        {
            if (listeningTo == client) return;
            Unlisten();
            if (client == null) return;
            if (onShotStarted == null)
            {
                onShotStarted = s => Raise(shotStarted, s.EventId, false);
                // kept for the on-screen events when a screen shows the shot
                onShotFinished = s => Raise(shotFinished, s.EventId, client == null || client.Screen == null || !client.Screen.isActiveAndEnabled);
                onPresented = s => Raise(shotPresented, s.EventId, false);
                onEnded = s => Raise(shotEnded, s.EventId, true);
                onServerError = e => { string game; if (Take(e.EventId, true, out game)) error.Invoke(game, e.Message); };
                onSessionClosed = reason => gameEvents.Clear();
            }
            client.shotStarted.AddListener(onShotStarted);
            client.shotFinished.AddListener(onShotFinished);
            client.serverError.AddListener(onServerError);
            client.sessionClosed.AddListener(onSessionClosed);
            client.shotPresented.AddListener(onPresented);
            client.shotEnded.AddListener(onEnded);
            listeningTo = client;
        }

        void Unlisten()
        {
            if (listeningTo == null) return;
            listeningTo.shotStarted.RemoveListener(onShotStarted);
            listeningTo.shotFinished.RemoveListener(onShotFinished);
            listeningTo.serverError.RemoveListener(onServerError);
            listeningTo.sessionClosed.RemoveListener(onSessionClosed);
            listeningTo.shotPresented.RemoveListener(onPresented);
            listeningTo.shotEnded.RemoveListener(onEnded);
            listeningTo = null;
        }

        void Raise(GameEventShotEvent e, string eventId, bool last)
        {
            string game;
            if (Take(eventId, last, out game)) e.Invoke(game);
        }

        bool Take(string eventId, bool remove, out string game)
        {
            if (string.IsNullOrEmpty(eventId) || !gameEvents.TryGetValue(eventId, out game)) { game = null; return false; }
            if (remove) gameEvents.Remove(eventId);
            return true;
        }

        /// <summary>Resolves <paramref name="eventName"/> with <paramref name="parameters"/> and cues it;
        /// returns the cue's event id. Unknown events and missing parameters throw (see ShotPromptMap.Resolve).</summary>
        public string Fire(string eventName, IDictionary<string, string> parameters = null)
        {
            if (client == null) throw new InvalidOperationException("ShotStreamDirector '" + name + "' has no ShotStreamClient");
            if (promptMap == null) throw new InvalidOperationException("ShotStreamDirector '" + name + "' has no ShotPromptMap");
            ResolvedShot shot = promptMap.Resolve(eventName, parameters);
            string id = tagWithEventName ? client.Cue(shot.Prompt, (int)shot.Chunks, shot.Cut, eventName)
                                         : client.Cue(shot.Prompt, (int)shot.Chunks, shot.Cut);
            gameEvents[id] = eventName;
            return id;
        }

        /// <summary>Fires <paramref name="eventName"/> like <see cref="Fire"/> and returns its shot as a <see cref="ShotPlayback"/>,
        /// done once the shot has ended on screen: <c>yield return director.PlayShot("enter_hall", p);</c> or
        /// <c>await director.PlayShot("enter_hall", p);</c>. Unknown events and missing parameters throw, as in Fire.</summary>
        public ShotPlayback PlayShot(string eventName, IDictionary<string, string> parameters = null)
        {
            if (client == null) throw new InvalidOperationException("ShotStreamDirector '" + name + "' has no ShotStreamClient");
            if (promptMap == null) throw new InvalidOperationException("ShotStreamDirector '" + name + "' has no ShotPromptMap");
            ResolvedShot shot = promptMap.Resolve(eventName, parameters);
            ShotPlayback pb = tagWithEventName ? client.PlayShot(shot.Prompt, (int)shot.Chunks, shot.Cut, eventName)
                                               : client.PlayShot(shot.Prompt, (int)shot.Chunks, shot.Cut);
            gameEvents[pb.EventId] = eventName;
            return pb;
        }

        /// <summary>For UnityEvent wiring (no parameters): fires an event whose template has none; a failure is
        /// logged and raised as <see cref="error"/>.</summary>
        public void FireEvent(string eventName)
        {
            try { Fire(eventName); }
            catch (Exception e)
            {
                Debug.LogException(e);
                error.Invoke(eventName, e.Message);
            }
        }
    }
}
