#!/usr/bin/env bash
# TEST ONLY: the system test's agent, run at every boot of the QEMU guest by
# pneumoedge-test-agent.service (tests/system/build-rootfs.sh) from the test disk (the technician's
# USB stick, mounted at /media/usb). The kernel command line says what this boot is for:
#   pneumoedge.test=provision          install the stand-in browser, provision.sh from bundle 1,
#                                      the first-boot setup (firstboot.sh), power off
#   pneumoedge.test=firstboot          wait for the kiosk, report, wait for the host's case, power off
#   pneumoedge.test=update             wait for the kiosk, run update.sh with bundle 2; with
#                                      pneumoedge.cut=STEP, update.sh pauses at STEP (its test hook)
#                                      and the host cuts the power
#   pneumoedge.test=check              report what serves after a power cut; stay up
# Every line for the host starts with "PNEUMOEDGE-TEST:"; output goes to the serial console.
set -uo pipefail
trap '' HUP # a getty on the console must not end the test
usb=/media/usb
prefix=/opt/pneumoedge
say() { printf 'PNEUMOEDGE-TEST: %s\n' "$*"; }
arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^$1=//p" | tail -1; }
mode="$(arg pneumoedge.test)"
cut="$(arg pneumoedge.cut)"
say "agent up: mode=${mode:-none} cut=${cut:-none} uptime=$(cut -d' ' -f1 /proc/uptime)s"

# wait_active UNIT SECONDS: until UNIT is active (or it gives up).
wait_active() {
	local i
	for ((i = 0; i < $2; i += 2)); do
		systemctl is-active --quiet "$1" && return 0
		sleep 2
	done
	return 1
}

# settled: the boot-time health check (if it ran) has finished.
wait_settled() {
	local i state
	for ((i = 0; i < 1800; i += 2)); do
		state="$(systemctl show -P ActiveState pneumoedge-health.service)"
		[[ "$state" == activating ]] || return 0
		sleep 2
	done
}

cases() { sqlite3 /var/lib/pneumoedge/pneumoedge.sqlite3 'SELECT count(*) FROM cases' 2>&1; }

report() {
	say "health-service=$(systemctl show -P Result pneumoedge-health.service)/$(systemctl show -P ActiveState pneumoedge-health.service)"
	say "current=$(basename "$(readlink "${prefix}/current")") previous=$(basename "$(readlink "${prefix}/previous" 2>/dev/null)" 2>/dev/null)"
	say "pending=$([[ -f "${prefix}/.pending-update" ]] && tr '\n' ' ' <"${prefix}/.pending-update" || echo none)"
	say "app=$(systemctl is-active pneumoedge.service) screen=$(systemctl is-active pneumoedge-kiosk.service)"
	say "cases=$(cases)"
	say "uptime=$(cut -d' ' -f1 /proc/uptime)s"
}

bundle() { ls "${usb}"/pneumoedge-"$1"-*.tar.gz; }

case "$mode" in
provision)
	# The clinic's OS image would have Chromium and cage; this guest has no display (stand-ins).
	install -m 0755 "${usb}/test/chromium" "${usb}/test/cage" /usr/local/bin/
	export HEALTH_TIMEOUT_SEC=900 START_TIMEOUT_SEC=900 WATCHDOG_SEC=120 SCREEN_SETTLE_SEC=15
	if ! "${usb}/firmware_scripts/provision.sh" --pubkey "${usb}/pneumoedge-signing.pub" "$(bundle 1.0.0)"; then
		say "provision FAILED"
		tail -n 40 /var/log/pneumoedge/provision.log
		exit 1
	fi
	say "provision done"
	# The first-boot questions (pneumoedge-firstboot.service asks them on the screen).
	if ! printf 'Test Clinic\nsystemtest-code\nsystemtest-code\n' |
		PNEUMOEDGE_CONFIG=/etc/pneumoedge/pneumoedge.conf "${prefix}/current/firmware_scripts/firstboot.sh"; then
		say "firstboot FAILED"
		exit 1
	fi
	say "firstboot done"
	report
	sync
	say "powering off"
	systemctl poweroff
	;;
firstboot)
	wait_active pneumoedge.service 1800 || say "pneumoedge.service not active after 30 min"
	wait_active pneumoedge-kiosk.service 300 || say "pneumoedge-kiosk.service not active"
	report
	say "ready for the host's case"
	for ((i = 0; i < 1800; i += 2)); do
		[[ "$(cases)" =~ ^[1-9] ]] && break
		sleep 2
	done
	report
	sync
	say "powering off"
	systemctl poweroff
	;;
update)
	# The stand-in browser of this test run (the disk may come from an earlier provisioning).
	install -m 0755 "${usb}/test/chromium" "${usb}/test/cage" /usr/local/bin/
	wait_active pneumoedge.service 1800 || say "pneumoedge.service not active after 30 min"
	report
	mkdir -p /run/pneumoedge-test
	if [[ -n "$cut" ]]; then
		# update.sh's test hook (lib/common.sh pause_point): stops there until the power goes.
		echo "$cut" >/run/pneumoedge-test/pause-at
	fi
	if [[ "$cut" == rollback ]]; then
		# 2.0.0's screen will not come up (the stand-in browser crashes), so update.sh rolls back.
		echo 2.0.0 >/run/pneumoedge-test/screen-fail
	fi
	say "running update.sh"
	/opt/pneumoedge/updater/update.sh "$(bundle 2.0.0)"
	say "update.sh exited $?"
	report
	sync
	say "powering off"
	systemctl poweroff
	;;
check)
	wait_settled
	wait_active pneumoedge.service 1800 || say "pneumoedge.service not active after 30 min"
	wait_active pneumoedge-kiosk.service 300 || say "pneumoedge-kiosk.service not active"
	sleep 5
	report
	say "check done"
	;;
*) say "no test mode on the kernel command line; idle" ;;
esac
