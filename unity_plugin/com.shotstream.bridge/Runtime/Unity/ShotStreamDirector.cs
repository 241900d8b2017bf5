// Game events -> shots: resolves an event through a ShotPromptMap and cues it on a ShotStreamClient.
using System;
using System.Collections.Generic;
using UnityEngine;

namespace ShotStream.Unity
{
    [AddComponentMenu("ShotStream/ShotStream Director")]
    public sealed class ShotStreamDirector : MonoBehaviour
    {
        [SerializeField] ShotStreamClient client = null;
        [SerializeField] ShotPromptMap promptMap = null;
        [Tooltip("Tag each cue with its game event name")]
        [SerializeField] bool tagWithEventName = true;

        public ShotStreamClient Client { get { return client; } set { client = value; } }
        public ShotPromptMap PromptMap { get { return promptMap; } set { promptMap = value; } }

        /// <summary>Resolves <paramref name="eventName"/> with <paramref name="parameters"/> and cues it;
        /// returns the cue's event id. Unknown events and missing parameters throw (see ShotPromptMap.Resolve).</summary>
        public string Fire(string eventName, IDictionary<string, string> parameters = null)
        {
            if (client == null) throw new InvalidOperationException("ShotStreamDirector '" + name + "' has no ShotStreamClient");
            if (promptMap == null) throw new InvalidOperationException("ShotStreamDirector '" + name + "' has no ShotPromptMap");
            ResolvedShot shot = promptMap.Resolve(eventName, parameters);
            return tagWithEventName ? client.Cue(shot.Prompt, (int)shot.Chunks, shot.Cut, eventName)
                                    : client.Cue(shot.Prompt, (int)shot.Chunks, shot.Cut);
        }

        /// <summary>For UnityEvent wiring (no parameters): fires an event whose template has none.</summary>
        public void FireEvent(string eventName)
        {
            try { Fire(eventName); }
            catch (Exception e) { Debug.LogException(e); }
        }
    }
}
