// Sample: keys 1/2/3 fire named game events through a ShotStreamDirector, whose prompts come from the
// EventShotsPromptMap asset; T starts and stops a take (an MP4 the service writes on its host).
// EventShots.unity is a ready scene with this wired up.
using System.Collections.Generic;
using ShotStream.Unity;
using UnityEngine;

namespace ShotStream.Samples
{
    public sealed class EventShotsSample : MonoBehaviour
    {
        [SerializeField] ShotStreamDirector director = null;
        [SerializeField] string character = "the knight";

        bool recording;

        void Start()
        {
            if (director == null) Debug.LogWarning("EventShots: no ShotStreamDirector assigned");
            else if (director.PromptMap == null) Debug.LogWarning("EventShots: the director has no Prompt Map (assign EventShotsPromptMap)");
            else Debug.Log("EventShots: keys 1/2/3 fire enter_hall, draw_sword, dragon_attacks (cut); T starts/stops a take");
            if (director != null && director.Client != null)
            {
                var client = director.Client;
                client.takeStarted.AddListener(t => { recording = true; Debug.Log("EventShots: recording take " + t.Name + " to " + t.Path); });
                client.takeSaved.AddListener(t => { recording = false; Debug.Log("EventShots: take saved: " + t.Path + " (" + t.Frames + " frames)"); });
            }
        }

        void Update()
        {
            if (director == null) return;
            if (Input.GetKeyDown(KeyCode.Alpha1)) Fire("enter_hall");
            if (Input.GetKeyDown(KeyCode.Alpha2)) Fire("draw_sword");
            if (Input.GetKeyDown(KeyCode.Alpha3)) Fire("dragon_attacks");  // cuts the current shot
            if (Input.GetKeyDown(KeyCode.T) && director.Client != null)
            {
                if (recording) director.Client.StopTake();
                else director.Client.StartTake();  // the server names it <session>-take<n>
            }
        }

        void Fire(string eventName)
        {
            try { Debug.Log("EventShots: " + eventName + " -> " + director.Fire(eventName, new Dictionary<string, string> { { "character", character } })); }
            catch (System.Exception e) { Debug.LogException(e); }
        }
    }
}
