// Command systemctl is the migration test's stand-in for systemd's
// systemctl. It is NOT kubelet: it records every call, and on
// "restart kubelet" does the one thing the migration test needs from a
// restarted kubelet — it reads the runtime endpoint from kubelet's files
// (flags override the KubeletConfiguration, as in kubelet), asks that
// runtime for its version over CRI, and reports the node Ready with that
// runtime through the API server, as kubelet's node status update does.
//
// It also replaces a stand-in kubelet process: a copy of this program run
// under the name "kubelet" that holds a connection to the runtime's socket,
// as a running kubelet does (berth migrate checks that connection). Its pid
// is kept in STANDIN_KUBELET_PID; a restart ends the previous one.
//
// Environment: STANDIN_LOG (calls are appended), STANDIN_KUBECONFIG,
// STANDIN_NODE, STANDIN_KUBEADM_FLAGS, STANDIN_KUBELET_CONFIG,
// STANDIN_KUBELET_PID, and STANDIN_FAIL_RESTART (a file: while it exists,
// restart fails).
package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	if filepath.Base(os.Args[0]) == "kubelet" {
		holdConnection()
		return
	}
	logf(strings.Join(os.Args[1:], " "))
	if len(os.Args) == 3 && os.Args[1] == "restart" && os.Args[2] == "kubelet" {
		if f := os.Getenv("STANDIN_FAIL_RESTART"); f != "" {
			if _, err := os.Stat(f); err == nil {
				fmt.Fprintln(os.Stderr, "Job for kubelet.service failed (stand-in told to fail).")
				os.Exit(1)
			}
		}
		if err := restartKubelet(); err != nil {
			fmt.Fprintln(os.Stderr, "stand-in systemctl:", err)
			logf("error: " + err.Error())
			os.Exit(1)
		}
	}
}

// holdConnection is the stand-in kubelet: it connects to the runtime socket
// named by its argument and stays, as kubelet's CRI client does.
func holdConnection() {
	if len(os.Args) != 2 {
		os.Exit(2)
	}
	conn, err := net.Dial("unix", strings.TrimPrefix(os.Args[1], "unix://"))
	if err == nil {
		defer conn.Close()
	}
	time.Sleep(10 * time.Minute)
}

// restartKubeletProcess ends the previous stand-in kubelet and starts a new
// one connected to endpoint.
func restartKubeletProcess(endpoint string) error {
	pidFile := os.Getenv("STANDIN_KUBELET_PID")
	if data, err := os.ReadFile(pidFile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	kubelet := filepath.Join(filepath.Dir(self), "kubelet")
	if _, err := os.Stat(kubelet); err != nil {
		if err := os.Link(self, kubelet); err != nil {
			return err
		}
	}
	cmd := exec.Command(kubelet, endpoint)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	logf(fmt.Sprintf("kubelet process %d", cmd.Process.Pid))
	return os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
}

func logf(line string) {
	f, err := os.OpenFile(os.Getenv("STANDIN_LOG"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stand-in systemctl: log:", err)
		os.Exit(1)
	}
	defer f.Close()
	fmt.Fprintln(f, line)
}

var (
	flagRe  = regexp.MustCompile(`--container-runtime-endpoint[= ]([^ "']+)`)
	fieldRe = regexp.MustCompile(`(?m)^containerRuntimeEndpoint:\s*(\S+)`)
)

// endpoint reads the endpoint the way kubelet would end up with it.
func endpoint() (string, error) {
	if data, err := os.ReadFile(os.Getenv("STANDIN_KUBEADM_FLAGS")); err == nil {
		sc := bufio.NewScanner(strings.NewReader(string(data)))
		ep := ""
		for sc.Scan() {
			if m := flagRe.FindStringSubmatch(sc.Text()); m != nil {
				ep = m[1]
			}
		}
		if ep != "" {
			return ep, nil
		}
	}
	data, err := os.ReadFile(os.Getenv("STANDIN_KUBELET_CONFIG"))
	if err != nil {
		return "", err
	}
	if m := fieldRe.FindSubmatch(data); m != nil {
		return string(m[1]), nil
	}
	return "", fmt.Errorf("no runtime endpoint configured")
}

func restartKubelet() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ep, err := endpoint()
	if err != nil {
		return err
	}
	logf("kubelet endpoint " + ep)
	if err := restartKubeletProcess(ep); err != nil {
		return err
	}
	ready, message, runtimeVersion := corev1.ConditionTrue, "kubelet is posting ready status (stand-in)", ""
	conn, err := grpc.NewClient(ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	v, err := runtimeapi.NewRuntimeServiceClient(conn).Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		ready, message = corev1.ConditionFalse, "container runtime is down: "+err.Error()
	} else {
		runtimeVersion = v.RuntimeName + "://" + v.RuntimeVersion
	}
	logf(fmt.Sprintf("kubelet runtime %q ready %s", runtimeVersion, ready))

	rc, err := clientcmd.BuildConfigFromFlags("", os.Getenv("STANDIN_KUBECONFIG"))
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	nodes := client.CoreV1().Nodes()
	node, err := nodes.Get(ctx, os.Getenv("STANDIN_NODE"), metav1.GetOptions{})
	if err != nil {
		return err
	}
	now := metav1.Now()
	cond := corev1.NodeCondition{Type: corev1.NodeReady, Status: ready, Reason: "KubeletReady", Message: message,
		LastHeartbeatTime: now, LastTransitionTime: now}
	replaced := false
	for i, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == ready {
				cond.LastTransitionTime = c.LastTransitionTime
			}
			node.Status.Conditions[i] = cond
			replaced = true
		}
	}
	if !replaced {
		node.Status.Conditions = append(node.Status.Conditions, cond)
	}
	if runtimeVersion != "" {
		node.Status.NodeInfo.ContainerRuntimeVersion = runtimeVersion
	}
	_, err = nodes.UpdateStatus(ctx, node, metav1.UpdateOptions{})
	return err
}
