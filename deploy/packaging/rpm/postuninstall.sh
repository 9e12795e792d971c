# natsgate.rpm %postun ($1: 0 on erase, 1 on upgrade): reload units; after an
# upgrade restart a running gateway on the new binary (%systemd_postun_with_restart).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart natsgate.service >/dev/null 2>&1 || :
    fi
fi
exit 0
