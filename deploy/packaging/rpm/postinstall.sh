# natsgate.rpm %post ($1: 1 on install, 2 on upgrade): what %systemd_post does
# (presets enable the unit or not), without starting it: it needs its secrets
# in /etc/natsgate/natsgate.env first.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl --no-reload preset natsgate.service >/dev/null 2>&1 || :
    fi
fi
exit 0
